using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Synchronous replication with real slabd processes: writes of an attached replicated volume land on
/// every replica; a replica node killed with SIGKILL is dropped from the in-sync set by an epoch bump
/// before a write is acknowledged without it; every acknowledged write reads back, on this node and
/// on another node that attaches the volume afterwards.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterReplicationTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    [Fact]
    public async Task A_killed_replica_node_is_dropped_by_an_epoch_bump_and_no_acknowledged_write_is_lost()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("repl");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2", "--nodes", "node-1,node-2");
        var created = await cluster.InspectAsync(3, name);
        Assert.Equal("up", created.GetProperty("state").GetString());
        Assert.Equal(2, created.GetProperty("replicas").GetArrayLength());

        // Attached on node-1: its controller writes the local replica and node-2's over TCP.
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var before = await BlockPatterns.WriteAsync(device, 8, i => i * 64L * Block, seed: 100, () => cluster[1].Log);

        var epochBefore = LocalCluster.EpochOf(await cluster.InspectAsync(1, name));
        await cluster[2].KillAsync();

        // The next writes find node-2 gone: it is dropped (epoch bump in Raft), then they are acknowledged.
        var after = await BlockPatterns.WriteAsync(device, 8, i => ((i * 64L) + 1) * Block, seed: 200, () => cluster[1].Log);

        var degraded = await cluster.InspectAsync(3, name);
        output.WriteLine(degraded.ToString());
        Assert.Equal("degraded", degraded.GetProperty("state").GetString());
        Assert.True(LocalCluster.EpochOf(degraded) > epochBefore, $"epoch {LocalCluster.EpochOf(degraded)} after the drop, {epochBefore} before");
        var modes = degraded.GetProperty("replicas").EnumerateArray().ToDictionary(r => r.GetProperty("nodeName").GetString()!, r => r.GetProperty("state").GetString());
        Assert.Equal("in-sync", modes["node-1"]);
        Assert.Equal("faulted", modes["node-2"]);
        Assert.Contains("dropped from the in-sync set", cluster[1].Log, StringComparison.Ordinal);
        var status = await cluster[3].CliOkAsync("status");
        Assert.Contains("replica on node-2 is faulted", status, StringComparison.Ordinal);

        await BlockPatterns.AssertReadsBackAsync(device, before.Concat(after));

        // node-2 comes back: node-1's controller resyncs it by delta (only the regions written
        // meanwhile) and promotes it with another epoch bump.
        await cluster.RestartAsync(2);
        await Poll.UntilAsync(
            async () => (await cluster.InspectAsync(1, name)).GetProperty("state").GetString() == "up",
            TimeSpan.FromSeconds(90),
            "node-2's replica back in sync");
        var resynced = await cluster.InspectAsync(1, name);
        Assert.True(LocalCluster.EpochOf(resynced) > LocalCluster.EpochOf(degraded));
        Assert.Contains($"resync of replica on node-2 done (delta)", cluster[1].Log, StringComparison.Ordinal);
        output.WriteLine(cluster[1].Log.Split('\n').First(l => l.Contains("resync of replica on node-2 done", StringComparison.Ordinal)));

        // Written with both in sync again.
        var last = TestData.Pattern(Block, 300);
        Assert.Equal(0, (await DirectBlockIo.WriteAsync(device, 2 * Block, last)).ExitCode);
        var all = before.Concat(after).Append((2L * Block, last)).ToList();

        // node-1, which held the other replica, dies; node-3 (no replica) attaches and reads every
        // acknowledged write from node-2's resynced replica alone (node-1's is dropped on the way).
        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].KillAsync();
        var remote = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        await BlockPatterns.AssertReadsBackAsync(remote, all);

        await cluster[3].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("volume", "delete", name);
    }

    [Fact]
    public async Task When_the_controllers_node_dies_another_node_takes_over_every_replica_and_reads_every_acknowledged_write()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("rto");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2", "--nodes", "node-1,node-2");

        // The controller runs on node-3, which holds no replica: every write crosses to node-1 and node-2.
        var device = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        var written = await BlockPatterns.WriteAsync(device, 16, i => i * 17L * Block, seed: 400, () => cluster[3].Log);

        var epochBefore = LocalCluster.EpochOf(await cluster.InspectAsync(1, name));
        var killed = DateTimeOffset.UtcNow;
        await cluster[3].KillAsync();
        await Poll.UntilAsync(async () => (await cluster.StatusesAsync(1))["node-3"] == "offline", TimeSpan.FromSeconds(30), "node-3 offline");
        var seenOffline = DateTimeOffset.UtcNow;

        // node-1 takes the attachment over (epoch bump): both replicas refuse node-3's epoch from now on.
        var taken = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var next = TestData.Pattern(Block, 500);
        Assert.Equal(0, (await DirectBlockIo.WriteAsync(taken, 3 * Block, next)).ExitCode);
        var firstWrite = DateTimeOffset.UtcNow;
        output.WriteLine($"RTO: {(firstWrite - killed).TotalSeconds:0.0} s from the kill, {(firstWrite - seenOffline).TotalSeconds:0.0} s after node-3 was seen offline");

        var inspected = await cluster.InspectAsync(2, name);
        Assert.True(LocalCluster.EpochOf(inspected) > epochBefore);
        Assert.Equal("up", inspected.GetProperty("state").GetString());
        await BlockPatterns.AssertReadsBackAsync(taken, written);

        Assert.Equal(next, await DirectBlockIo.ReadAsync(taken, 3 * Block, Block));
        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].CliOkAsync("volume", "delete", name);
    }

    [Fact]
    public async Task A_replica_node_killed_under_fio_verify_loses_nothing_and_resyncs_by_delta()
    {
        HostCommand.RequireTool("fio", "fio");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("fiov");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2", "--nodes", "node-1,node-2");

        // The controller on node-3 holds no replica: killing node-2 leaves node-1's replica alone in sync.
        var device = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        string[] Job(string mode) =>
        [
            "--name=verify", $"--filename={device}", "--ioengine=libaio", "--direct=1", "--rw=randwrite", "--bs=64k", "--iodepth=8",
            "--size=512m", "--io_size=256m", "--randrepeat=1", "--verify=crc32c", "--verify_fatal=1", mode, "--output-format=json",
        ];
        var writing = HostCommand.RunAsync("fio", Job("--do_verify=0"), TimeSpan.FromMinutes(5));
        await Poll.UntilAsync(() => cluster[3].Log.Contains("connected (protocol v1", StringComparison.Ordinal), TimeSpan.FromSeconds(30), "writes flowing");
        await Task.Delay(TimeSpan.FromSeconds(1)); // a second of writes lands on both replicas first
        await cluster[2].KillAsync();
        var written = await writing;
        Assert.True(written.ExitCode == 0, $"fio's writes failed while node-2 died: {written}\n{cluster[3].Log}");

        // node-2 returns and gets only what it missed; then every block fio wrote verifies, and the replicas agree.
        await cluster.RestartAsync(2);
        await Poll.UntilAsync(
            async () => (await cluster.InspectAsync(1, name)).GetProperty("state").GetString() == "up",
            TimeSpan.FromSeconds(90),
            "node-2's replica back in sync");
        var resync = cluster[3].Log.Split('\n').Last(l => l.Contains("resync of replica on node-2 done", StringComparison.Ordinal));
        output.WriteLine(resync);
        Assert.Contains("(delta)", resync, StringComparison.Ordinal);
        var regions = long.Parse(System.Text.RegularExpressions.Regex.Match(resync, @"\(delta\): (\d+) regions").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(regions <= 512, $"fio wrote only the first 512 MiB of the 1 GiB volume, yet {regions} regions were copied");

        var verified = await HostCommand.RunAsync("fio", Job("--verify_only"), TimeSpan.FromMinutes(5));
        Assert.True(verified.ExitCode == 0, $"fio verify failed: {verified}");
        using (var json = JsonDocument.Parse(verified.Stdout[verified.Stdout.IndexOf('{', StringComparison.Ordinal)..]))
        {
            Assert.Equal(0, json.RootElement.GetProperty("jobs")[0].GetProperty("error").GetInt32());
        }

        Assert.Contains("no differences", await cluster[1].CliOkAsync("volume", "check", name), StringComparison.Ordinal);
        await cluster[3].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("volume", "delete", name);
    }
}
