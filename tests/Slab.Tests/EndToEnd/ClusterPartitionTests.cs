using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Three voters, each slabd in its own network namespace on one virtual switch (NetworkLab); the
/// Raft leader is cut off from the others. slabctl reaches each node through its API unix socket,
/// which no partition touches.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterPartitionTests(ITestOutputHelper output)
{
    private static string Name(string prefix) => LocalCluster.UniqueName(prefix);

    [NetworkLabFact]
    public async Task A_cut_off_leader_refuses_writes_serves_reads_and_catches_up_when_the_link_returns()
    {
        await using var lab = await NetworkLab.CreateAsync(3, NetworkLab.NewPrefix());
        await using var cluster = await LocalCluster.StartAsync(
            3, addressOf: i => lab.Address(i - 1).ToString(), namespaceOf: i => lab.NamespaceName(i - 1));
        var cutOff = await cluster.LeaderAsync(1);
        var majority = cluster.Indexes.Where(i => i != cutOff).ToArray();
        var before = Name("before");
        await cluster[majority[0]].CliOkAsync("volume", "create", before, "--size", "1", "--nodes", LocalCluster.NameOf(cutOff));

        await lab.IsolateAsync(cutOff - 1);
        output.WriteLine($"leader node-{cutOff} cut off from node-{majority[0]} and node-{majority[1]}");

        // The cut-off side refuses every change, saying why, and creates nothing.
        var lost = Name("lost");
        var refused = await cluster[cutOff].CliAsync("volume", "create", lost, "--size", "1");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("no quorum", refused.Stderr, StringComparison.Ordinal);

        // ... and still answers reads from what it has.
        Assert.Contains(before, await cluster[cutOff].CliOkAsync("volume", "list"), StringComparison.Ordinal);
        await cluster[cutOff].CliOkAsync("volume", "inspect", before);
        await Poll.UntilAsync(
            async () => (await cluster.StatusesAsync(cutOff)).Where(s => s.Key != LocalCluster.NameOf(cutOff)).All(s => s.Value == "offline"),
            TimeSpan.FromSeconds(30),
            "the cut-off node to see the others offline");

        // The majority elects a leader, sees the cut-off node offline, and goes on.
        await Poll.UntilAsync(
            async () => (await cluster.StatusesAsync(majority[0]))[LocalCluster.NameOf(cutOff)] == "offline",
            TimeSpan.FromSeconds(30),
            "the majority to see the cut-off node offline");
        var during = Name("during");
        await Poll.UntilAsync(
            async () => (await cluster[majority[1]].CliAsync("volume", "create", during, "--size", "1")).ExitCode == 0
                || (await cluster[majority[1]].CliAsync("volume", "inspect", during)).ExitCode == 0,
            TimeSpan.FromSeconds(60),
            "a create on the majority side");

        // The link returns: the cut-off node catches up, the refused create never appears, writes work everywhere.
        await lab.RejoinAsync(cutOff - 1);
        await cluster.WaitUntilAllOnlineAsync();
        await Poll.UntilAsync(
            async () => (await cluster[cutOff].CliAsync("volume", "inspect", during)).ExitCode == 0,
            TimeSpan.FromSeconds(60),
            "the healed node to learn of the volume created without it");
        foreach (var i in cluster.Indexes)
        {
            Assert.DoesNotContain(lost, await cluster[i].CliOkAsync("volume", "list"), StringComparison.Ordinal);
        }

        var after = Name("after");
        await Poll.UntilAsync(
            async () => (await cluster[cutOff].CliAsync("volume", "create", after, "--size", "1")).ExitCode == 0
                || (await cluster[cutOff].CliAsync("volume", "inspect", after)).ExitCode == 0,
            TimeSpan.FromSeconds(60),
            "a create on the healed node");
    }

    /// <summary>
    /// RPO 0 under a partition: the node running a replicated volume's controller (holding no
    /// replica, not a voter) is cut off while it writes. It cannot drop the unreachable replicas
    /// without a quorum, so its write fails and is never acknowledged; the majority side takes the
    /// volume over (epoch bump); after healing the old device is fenced and the replicas agree.
    /// </summary>
    [NetworkLabFact]
    public async Task A_cut_off_controller_acknowledges_nothing_and_the_majority_takes_over_without_divergence()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var lab = await NetworkLab.CreateAsync(4, NetworkLab.NewPrefix());
        await using var cluster = await LocalCluster.StartAsync(
            4, addressOf: i => lab.Address(i - 1).ToString(), namespaceOf: i => lab.NamespaceName(i - 1));
        var name = Name("cutctl");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2", "--nodes", "node-1,node-2");
        var device = (await cluster[4].CliOkAsync("host", "attach", name)).Trim();
        var before = TestData.Pattern(4096, 1);
        await DirectBlockIo.WriteCheckedAsync(device, 0, before);

        await lab.IsolateAsync(3); // node-4
        var cut = TestData.Pattern(4096, 2);
        var cutWrite = DirectBlockIo.WriteAsync(device, 8192, cut, timeout: TimeSpan.FromSeconds(40));

        // The majority sees node-4 offline and takes the volume over on node-3.
        await Poll.UntilAsync(async () => (await cluster.StatusesAsync(1))["node-4"] == "offline", TimeSpan.FromSeconds(60), "node-4 offline");
        var taken = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        var after = TestData.Pattern(4096, 3);
        await DirectBlockIo.WriteCheckedAsync(taken, 4096, after);

        // The cut-off write is never acknowledged: dd's O_DIRECT write through the loop/FUSE stack may
        // return, but the fsync after it (the acknowledgement point) never succeeds: it fails, or is
        // still pending when dd gives up (through nbdfuse + loop the fsync after a write slabd failed
        // waits in the kernel; see the issue note).
        try
        {
            var cutResult = await cutWrite;
            output.WriteLine($"write on the cut-off controller: {cutResult}");
            Assert.NotEqual(0, cutResult.ExitCode);
        }
        catch (TimeoutException e)
        {
            output.WriteLine($"write on the cut-off controller still pending: {e.Message}");
        }

        // Healed: node-4's device is fenced; nothing it tried landed; the replicas agree.
        await lab.RejoinAsync(3);
        await cluster.WaitUntilAllOnlineAsync();
        var late = await DirectBlockIo.WriteAsync(device, 12288, TestData.Pattern(4096, 4));
        Assert.NotEqual(0, late.ExitCode);
        Assert.Equal(before, await DirectBlockIo.ReadAsync(taken, 0, 4096));
        Assert.Equal(after, await DirectBlockIo.ReadAsync(taken, 4096, 4096));
        Assert.NotEqual(cut, await DirectBlockIo.ReadAsync(taken, 8192, 4096));
        Assert.NotEqual(TestData.Pattern(4096, 4), await DirectBlockIo.ReadAsync(taken, 12288, 4096));
        Assert.Contains("no differences", await cluster[3].CliOkAsync("volume", "check", name), StringComparison.Ordinal);

        await cluster[4].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("volume", "delete", name);
    }
}
