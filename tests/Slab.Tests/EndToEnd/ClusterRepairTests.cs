using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Replica repair with real slabd processes: a replica whose node stays offline past the cluster's
/// repl-move-timeout is replaced on another node and rebuilt, and the old one is deleted when its
/// node returns; a decommissioned node hands its replicas over the same way, then leaves.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterRepairTests(ITestOutputHelper output)
{

    [Fact]
    public async Task Replicas_move_off_a_node_offline_past_repl_move_timeout_and_off_a_decommissioned_node()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(4); // node-4 is not a KVDB voter, so it can be decommissioned
        var name = LocalCluster.UniqueName("repair");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "1");
        var first = LocalCluster.IndexOf(LocalCluster.ReplicaNodes(await cluster.InspectAsync(1, name)).Single());
        await cluster[1].CliOkAsync("volume", "ha-update", name, "--repl", "2", "--node", first == 4 ? "node-1" : "node-4", "--wait");
        var replicas = LocalCluster.ReplicaNodes(await cluster.InspectAsync(1, name)).Select(LocalCluster.IndexOf).ToList();
        Assert.Contains(4, replicas);
        var killed = replicas.Single(i => i != 4);
        var controller = Enumerable.Range(1, 3).First(i => !replicas.Contains(i)); // holds no replica: it survives the kill

        var device = (await cluster[controller].CliOkAsync("host", "attach", name)).Trim();
        var written = await BlockPatterns.WriteAsync(device, 10, i => i * (7L << 20), seed: 1100);

        var options = await cluster[2].CliOkAsync("cluster", "options", "update", "--repl-move-timeout", "0.1", "--resync-rate", "200");
        output.WriteLine(options);
        Assert.Contains("0.1 minutes", options, StringComparison.Ordinal);
        Assert.Contains("200 MB/s", await cluster[3].CliOkAsync("cluster", "options", "list"), StringComparison.Ordinal);
        var refused = await cluster[1].CliAsync("cluster", "options", "update", "--repl-move-timeout", "soon");
        Assert.NotEqual(0, refused.ExitCode);

        // node-K dies and stays away past the timeout: the leader places a replacement, the controller rebuilds it.
        var volumeId = (await cluster.InspectAsync(1, name)).GetProperty("id").GetString()!;
        var oldFile = LocalCluster.ReplicaFile(cluster[killed], volumeId);
        await cluster[killed].KillAsync();
        await WithLogsOnFailureAsync(cluster, () => Poll.UntilAsync(
            async () =>
            {
                var volume = await cluster.InspectAsync(controller, name);
                var nodes = LocalCluster.ReplicaNodes(volume);
                return nodes.Count == 2 && !nodes.Contains($"node-{killed}") && volume.GetProperty("state").GetString() == "up";
            },
            TimeSpan.FromSeconds(120),
            $"node-{killed}'s replica replaced and rebuilt"));
        output.WriteLine(string.Join("\n", Enumerable.Range(1, 4).Where(i => i != killed).SelectMany(i => cluster[i].Log.Split('\n')).Where(l => l.Contains("gets a replacement", StringComparison.Ordinal) || l.Contains("done (rebuild)", StringComparison.Ordinal))));
        await WithLogsOnFailureAsync(cluster, () => AssertReplicasMatchAsync(cluster[controller], name));

        // It returns: its old replica is no longer the volume's, so it deletes it.
        await cluster.RestartAsync(killed);
        await Poll.UntilAsync(() => !File.Exists(oldFile), TimeSpan.FromSeconds(60), $"node-{killed} deletes the replaced replica");

        // node-4 is decommissioned while the volume stays attached elsewhere: its replica moves, then it leaves.
        var decommission = await cluster[1].CliOkAsync("cluster", "delete", "node-4");
        Assert.Contains("decommissioning", decommission, StringComparison.Ordinal);
        await WithLogsOnFailureAsync(cluster, () => Poll.UntilAsync(
            async () => (await cluster.ListNodesAsync(1)).Length == 3,
            TimeSpan.FromSeconds(120),
            "node-4 removed after its replica moved"));
        var after = await cluster.InspectAsync(1, name);
        Assert.DoesNotContain("node-4", LocalCluster.ReplicaNodes(after));
        Assert.Equal(2, LocalCluster.ReplicaNodes(after).Count);
        Assert.Equal("up", after.GetProperty("state").GetString());
        await WithLogsOnFailureAsync(cluster, () => AssertReplicasMatchAsync(cluster[controller], name));

        await BlockPatterns.AssertReadsBackAsync(device, written);

        await cluster[controller].CliOkAsync("host", "detach", name);
        await cluster[controller].CliOkAsync("volume", "delete", name);
    }

    /// <summary>
    /// <c>volume check</c> finds no differing region. Raft marks a rebuilt replica in sync before the
    /// controller's own view takes it in, so a check right after may still compare one replica
    /// ("nothing to compare"): that answer is asked again, a difference fails at once.
    /// </summary>
    private static async Task AssertReplicasMatchAsync(SlabNode controller, string name)
    {
        var last = "";
        try
        {
            await Poll.UntilAsync(
                async () =>
                {
                    last = await controller.CliOkAsync("volume", "check", name);
                    Assert.DoesNotContain(" differ:", last, StringComparison.Ordinal); // "N region(s) of S differ: @..."
                    return last.Contains("no differences", StringComparison.Ordinal);
                },
                TimeSpan.FromSeconds(30),
                $"the controller to compare every in-sync replica of {name}");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; the last check said: {last}; inspect: {await controller.CliOkAsync("volume", "inspect", name)}", e);
        }
    }

    private async Task WithLogsOnFailureAsync(LocalCluster cluster, Func<Task> wait)
    {
        try
        {
            await wait();
        }
        catch (TimeoutException)
        {
            foreach (var i in cluster.Indexes)
            {
                output.WriteLine($"---- node-{i}");
                output.WriteLine(string.Join("\n", cluster[i].Log.Split('\n').Where(l => !l.Contains(" info: Microsoft", StringComparison.Ordinal)).TakeLast(60)));
            }

            throw;
        }
    }
}
