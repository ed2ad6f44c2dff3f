using System.Diagnostics;
using System.Net.Sockets;
using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Real slabd processes on loopback addresses forming one cluster (3 KVDB voters, 2 non-voting
/// members), driven through the real slabctl on each node's own API socket.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterTests(ITestOutputHelper output)
{
    private static string Name(string prefix) => LocalCluster.UniqueName(prefix);

    [Fact]
    public async Task Five_nodes_form_one_cluster_place_by_policy_attach_anywhere_and_survive_a_full_restart()
    {
        // Started in reverse order: members and voters find each other without a bootstrap step.
        await using var cluster = await LocalCluster.StartAsync(5, order: [5, 4, 3, 2, 1]);

        // Every node lists every node, from a voter and from a non-voter alike.
        foreach (var from in new[] { 1, 5 })
        {
            var nodes = await cluster.ListNodesAsync(from);
            Assert.Equal(5, nodes.Length);
            Assert.Equal(3, nodes.Count(n => n.GetProperty("kvdb").GetBoolean()));
            Assert.Single(nodes, n => n.GetProperty("isLeader").GetBoolean());
            Assert.All(nodes, n => Assert.Equal("online", n.GetProperty("status").GetString()));
        }

        var ids = (await cluster.ListNodesAsync(1)).ToDictionary(n => n.GetProperty("name").GetString()!, n => n.GetProperty("id").GetString()!);

        // Created through a non-voter, placed on the node the policy names.
        var name = Name("placed");
        await cluster[5].CliOkAsync("volume", "create", name, "--size", "1", "--nodes", "node-2");
        foreach (var from in cluster.Indexes)
        {
            var volume = LocalCluster.First(await cluster[from].CliJsonAsync("volume", "inspect", name));
            var replica = Assert.Single(volume.GetProperty("replicas").EnumerateArray());
            Assert.Equal(ids["node-2"], replica.GetProperty("nodeId").GetString());
        }

        // One name created from every node at once: exactly one create wins, the others are told why.
        var contested = Name("contested");
        var attempts = await Task.WhenAll(cluster.Indexes.Select(i => cluster[i].CliAsync("volume", "create", contested, "--size", "1")));
        Assert.Single(attempts, a => a.ExitCode == 0);
        Assert.All(attempts.Where(a => a.ExitCode != 0), a => Assert.Contains("already exists", a.Stderr, StringComparison.Ordinal));
        Assert.Single((await cluster[3].CliJsonAsync("volume", "list")).EnumerateArray(), v => v.GetProperty("name").GetString() == contested);

        // A node in maintenance takes no new replicas and no attachments; it leaves maintenance cleanly.
        await cluster[1].CliOkAsync("service", "maintenance", "--enter", "--node", "node-3");
        var onMaintenance = await cluster[1].CliAsync("volume", "create", Name("maint"), "--size", "1", "--nodes", "node-3");
        Assert.NotEqual(0, onMaintenance.ExitCode);
        Assert.Contains("maintenance", onMaintenance.Stderr, StringComparison.Ordinal);
        var attachOnMaintenance = await cluster[3].CliAsync("host", "attach", contested);
        Assert.NotEqual(0, attachOnMaintenance.ExitCode);
        Assert.Contains("maintenance", attachOnMaintenance.Stderr, StringComparison.Ordinal);
        await cluster[1].CliOkAsync("service", "maintenance", "--exit", "--node", "node-3");

        // A node with a volume attached cannot be decommissioned.
        var holderId = Assert.Single(LocalCluster.First(await cluster[1].CliJsonAsync("volume", "inspect", contested)).GetProperty("replicas").EnumerateArray()).GetProperty("nodeId").GetString();
        var holder = ids.First(kv => kv.Value == holderId).Key;
        var holderIndex = int.Parse(holder["node-".Length..], System.Globalization.CultureInfo.InvariantCulture);
        await cluster[holderIndex].CliOkAsync("host", "attach", contested);
        var decommission = await cluster[1].CliAsync("cluster", "delete", holder);
        Assert.NotEqual(0, decommission.ExitCode);
        Assert.Contains("attached", decommission.Stderr, StringComparison.Ordinal);
        await cluster[holderIndex].CliOkAsync("host", "detach", contested);
        await cluster[1].CliOkAsync("volume", "delete", contested);

        // A replicated volume is placed on distinct nodes, every replica in sync; repl 4 is refused.
        var replicated = Name("repl");
        await cluster[1].CliOkAsync("volume", "create", replicated, "--size", "1", "--repl", "3");
        var replicas = LocalCluster.First(await cluster[2].CliJsonAsync("volume", "inspect", replicated)).GetProperty("replicas").EnumerateArray().ToList();
        Assert.Equal(3, replicas.Select(r => r.GetProperty("nodeId").GetString()).Distinct().Count());
        Assert.All(replicas, r => Assert.Equal("in-sync", r.GetProperty("state").GetString()));
        await cluster[1].CliOkAsync("volume", "delete", replicated);
        var repl4 = await cluster[1].CliAsync("volume", "create", Name("repl4"), "--size", "1", "--repl", "4");
        Assert.NotEqual(0, repl4.ExitCode);
        Assert.Contains("must be 1, 2 or 3", repl4.Stderr, StringComparison.Ordinal);

        // Mounted on node 4, which holds no replica: the data travels over the replication port.
        var mount4 = Path.Combine(cluster[4].Root, "mnt");
        await cluster[4].CliOkAsync("host", "mount", name, mount4);
        var payload = TestData.Pattern(3 << 20, 42);
        await File.WriteAllBytesAsync(Path.Combine(mount4, "payload.bin"), payload);

        // Formatted is known on every node (from the replica's node), not only where it was mounted.
        Assert.True(LocalCluster.First(await cluster[3].CliJsonAsync("volume", "inspect", name)).GetProperty("formatted").GetBoolean());

        // Exclusive: another node cannot attach it meanwhile.
        var second = await cluster[1].CliAsync("host", "attach", name);
        Assert.NotEqual(0, second.ExitCode);
        Assert.Contains("attached on node-4", second.Stderr, StringComparison.Ordinal);

        await cluster[4].CliOkAsync("host", "unmount", name, mount4);
        await cluster[4].CliOkAsync("host", "detach", name);

        // Any node can take it now and reads what node 4 wrote.
        var mount1 = Path.Combine(cluster[1].Root, "mnt");
        await cluster[1].CliOkAsync("host", "mount", name, mount1);
        Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(mount1, "payload.bin")));
        await cluster[1].CliOkAsync("host", "unmount", name, mount1);
        await cluster[1].CliOkAsync("host", "detach", name);

        // Garbage on a node's replication port is refused without harm.
        using (var client = new TcpClient())
        {
            await client.ConnectAsync(cluster.Address(2), 9503);
            var stream = client.GetStream();
            await stream.WriteAsync(TestData.Pattern(4096, 7));
            var buffer = new byte[4096];
            while (await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(30)) > 0)
            {
            }
        }

        Assert.NotNull(cluster[2].Pid);

        // A stopped node is reported offline by the others.
        var stopwatch = Stopwatch.StartNew();
        Assert.Equal(0, await cluster[5].StopAsync());
        await Poll.UntilAsync(async () => (await cluster.StatusesAsync(1))["node-5"] == "offline", TimeSpan.FromSeconds(30), "node-5 offline");
        output.WriteLine($"node-5 reported offline {stopwatch.Elapsed.TotalSeconds:0.0} s after SIGTERM returned");

        // Every node stops; on restart the cluster, its nodes and its volumes are all still there.
        await Task.WhenAll(Enumerable.Range(1, 4).Select(i => cluster[i].StopAsync()));
        await Task.WhenAll(cluster.Indexes.Select(cluster.RestartAsync));
        await cluster.WaitUntilAllOnlineAsync();
        var after = (await cluster.ListNodesAsync(3)).ToDictionary(n => n.GetProperty("name").GetString()!, n => n.GetProperty("id").GetString()!);
        Assert.Equal(ids, after);
        var restarted = LocalCluster.First(await cluster[3].CliJsonAsync("volume", "inspect", name));
        Assert.Equal(ids["node-2"], Assert.Single(restarted.GetProperty("replicas").EnumerateArray()).GetProperty("nodeId").GetString());
        await cluster[3].CliOkAsync("host", "mount", name, Path.Combine(cluster[3].Root, "mnt"));
        Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(cluster[3].Root, "mnt", "payload.bin")));
        await cluster[3].CliOkAsync("host", "unmount", name, Path.Combine(cluster[3].Root, "mnt"));
        await cluster[3].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("volume", "delete", name);
        Assert.NotEqual(0, (await cluster[1].CliAsync("volume", "inspect", name)).ExitCode);
    }
}

/// <summary>Cluster tests start many slabd processes; they run one at a time.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ClusterCollection
{
    public const string Name = "cluster";
}
