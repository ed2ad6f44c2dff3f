using Slab.Tests.Infrastructure;
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
}
