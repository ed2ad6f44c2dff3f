using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// <c>scripts/cluster</c> as a person uses it: <c>up 5</c> on 127.0.10.1–5 with default ports (in a
/// temporary <c>SLAB_CLUSTER_DIR</c>), the nodes used through slabctl over TCP, then <c>down</c>.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterScriptTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    [Fact]
    public async Task Cluster_up_5_gives_five_nodes_that_place_and_attach_anywhere_and_down_stops_them()
    {
        HostCommand.RequireTool("dd", "coreutils");
        var directory = Path.Combine("/tmp", "slab-cluster-" + Guid.NewGuid().ToString("N")[..8]);
        var environment = new Dictionary<string, string>
        {
            ["SLAB_CLUSTER_DIR"] = directory,
            ["SLAB_CLUSTER_ID"] = "script-test",
            ["SLAB_CLUSTER_DRIVE_GB"] = "4",
            ["SLAB_CLUSTER_NO_BUILD"] = "1",
        };
        var script = Path.Combine(BuildOutputs.RepositoryRoot, "scripts", "cluster");
        try
        {
            var up = await HostCommand.RunAsync(script, ["up", "5"], TimeSpan.FromMinutes(5), environment);
            output.WriteLine(up.ToString());
            Assert.True(up.ExitCode == 0, $"scripts/cluster up 5: {up}");
            Assert.All(Enumerable.Range(1, 5), i => Assert.Contains($"node-{i}", up.Stdout, StringComparison.Ordinal));

            // Every node lists every node online (status as a person checks it first).
            var status = await HostCommand.RunAsync(script, ["status"], TimeSpan.FromMinutes(1), environment);
            Assert.True(status.ExitCode == 0, status.ToString());
            Assert.Equal(5, status.Stdout.Split('\n').Count(l => l.Contains("running (pid", StringComparison.Ordinal)));
            foreach (var i in new[] { 1, 4 })
            {
                var nodes = (await CliJsonAsync(i, "cluster", "list")).EnumerateArray().ToArray();
                Assert.Equal(5, nodes.Length);
                Assert.All(nodes, n => Assert.Equal("online", n.GetProperty("status").GetString()));
                Assert.Equal(3, nodes.Count(n => n.GetProperty("kvdb").GetBoolean()));
            }

            // Created on node-5, placed on node-2 as asked, used from node-4.
            var name = LocalCluster.UniqueName("script");
            await CliOkAsync(5, "volume", "create", name, "--size", "1", "--nodes", "node-2");
            var volume = LocalCluster.First(await CliJsonAsync(1, "volume", "inspect", name));
            Assert.Equal("node-2", Assert.Single(volume.GetProperty("replicas").EnumerateArray()).GetProperty("nodeName").GetString());

            var device = (await CliOkAsync(4, "host", "attach", name)).Trim();
            var data = TestData.Pattern(Block, 5);
            await DirectBlockIo.WriteCheckedAsync(device, 0, data);
            Assert.Equal(data, await DirectBlockIo.ReadAsync(device, 0, Block));
            await CliOkAsync(4, "host", "detach", name);
            await CliOkAsync(3, "volume", "delete", name);

            var down = await HostCommand.RunAsync(script, ["down"], TimeSpan.FromMinutes(3), environment);
            Assert.True(down.ExitCode == 0, $"scripts/cluster down: {down}");
            Assert.Contains("5 nodes stopped", down.Stdout + down.Stderr, StringComparison.Ordinal);
            Assert.DoesNotContain("still attached", down.Stdout + down.Stderr, StringComparison.Ordinal);
            Assert.All(Enumerable.Range(1, 5), i => Assert.False(File.Exists(Path.Combine(directory, $"node-{i}", "slabd.pid")), $"node-{i} still has a pid file"));
            var after = await HostCommand.RunAsync(script, ["status"], TimeSpan.FromMinutes(1), environment);
            Assert.Equal(5, after.Stdout.Split('\n').Count(l => l.EndsWith(" stopped", StringComparison.Ordinal)));
        }
        finally
        {
            // Idempotent: stops whatever still runs when an assertion failed above.
            await HostCommand.RunAsync(script, ["down"], TimeSpan.FromMinutes(3), environment);
            Directory.Delete(directory, recursive: true);
        }
    }

    private static string EndpointOf(int node) => $"127.0.10.{node}:9501";

    private static Task<string> CliOkAsync(int node, params string[] arguments) => SlabNode.CliOkAtAsync(EndpointOf(node), arguments);

    private static Task<JsonElement> CliJsonAsync(int node, params string[] arguments) => SlabNode.CliJsonAtAsync(EndpointOf(node), arguments);
}
