using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// ha-update and volume check with real slabd processes: a replica added to an attached volume is
/// rebuilt from an in-sync one while the volume stays in use, then counts; <c>volume check</c>
/// compares the in-sync replicas and finds a block corrupted behind Slab's back; lowering the count
/// removes the replica named.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterHaUpdateTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    [Fact]
    public async Task Ha_update_rebuilds_a_new_replica_online_and_check_finds_a_corrupted_block()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("ha");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2");
        var placed = LocalCluster.ReplicaNodes(await cluster.InspectAsync(1, name));
        var (holder, other) = (LocalCluster.IndexOf(placed[0]), LocalCluster.IndexOf(placed[1]));
        var spare = 6 - holder - other; // the node without a replica gets the new one
        var device = (await cluster[holder].CliOkAsync("host", "attach", name)).Trim();
        var written = await BlockPatterns.WriteAsync(device, 12, i => (i * (3L << 20)) + (i * Block), seed: 700); // spread over regions, not region-aligned

        var refused = await cluster[spare].CliAsync("volume", "ha-update", name, "--repl", "2");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("already has 2", refused.Stderr, StringComparison.Ordinal);

        // Raised from a node that is not attached; the attached node's controller opens the new replica and rebuilds it.
        var raised = await cluster[spare].CliOkAsync("volume", "ha-update", name, "--repl", "3", "--wait");
        output.WriteLine(raised);
        Assert.Contains("in sync", raised, StringComparison.Ordinal);
        var volume = await cluster.InspectAsync(other, name);
        Assert.Equal("up", volume.GetProperty("state").GetString());
        Assert.Equal(3, volume.GetProperty("spec").GetProperty("repl").GetInt32());
        Assert.All(volume.GetProperty("replicas").EnumerateArray(), r => Assert.Equal("in-sync", r.GetProperty("state").GetString()));
        var rebuilt = cluster[holder].Log.Split('\n').First(l => l.Contains($"resync of replica on node-{spare} done (rebuild)", StringComparison.Ordinal));
        output.WriteLine(rebuilt);

        // Written while three replicas are in sync, then compared from a node that is not attached (forwarded).
        var last = TestData.Pattern(Block, 799);
        await DirectBlockIo.WriteCheckedAsync(device, 5L << 20, last);
        written.Add((5L << 20, last));
        var clean = await cluster[spare].CliOkAsync("volume", "check", name);
        output.WriteLine(clean);
        Assert.Contains("no differences", clean, StringComparison.Ordinal);
        Assert.Contains($"node-{spare}", clean, StringComparison.Ordinal);

        // A block of the new replica changed behind Slab's back is found.
        var file = LocalCluster.ReplicaFile(cluster[spare], volume.GetProperty("id").GetString()!);
        await DirectBlockIo.WriteCheckedAsync(file, (7L << 20) + Block, TestData.Pattern(Block, 12345));
        var check = await cluster[other].CliAsync("volume", "check", name);
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.Equal(1, check.ExitCode);
        Assert.Contains("1 region(s)", check.Stdout, StringComparison.Ordinal);
        Assert.Contains($"@{7L << 20}", check.Stdout, StringComparison.Ordinal);

        // Lowered by the bad replica: the others agree, its node deletes its file.
        await cluster[holder].CliOkAsync("volume", "ha-update", name, "--repl", "2", "--node", $"node-{spare}");
        volume = await cluster.InspectAsync(holder, name);
        Assert.Equal(placed.Order(), LocalCluster.ReplicaNodes(volume).Order());
        Assert.Contains("no differences", await cluster[holder].CliOkAsync("volume", "check", name), StringComparison.Ordinal);
        await Poll.UntilAsync(() => !File.Exists(file), TimeSpan.FromSeconds(60), "the removed replica's node deletes it");

        await BlockPatterns.AssertReadsBackAsync(device, written);

        await cluster[holder].CliOkAsync("host", "detach", name);
        await cluster[holder].CliOkAsync("volume", "delete", name);
    }


    [Fact]
    public async Task A_detached_volume_gets_its_new_replica_rebuilt_through_an_internal_resync_attachment()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("hadet");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "1", "--nodes", "node-1");
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var written = await BlockPatterns.WriteAsync(device, 8, i => i * (5L << 20), seed: 900);

        await cluster[1].CliOkAsync("host", "detach", name);

        // Nobody has it attached: node-1 (its in-sync replica's node) attaches it internally to rebuild node-2's.
        output.WriteLine(await cluster[3].CliOkAsync("volume", "ha-update", name, "--repl", "2", "--node", "node-2", "--wait"));
        await Poll.UntilAsync(
            async () => !(await cluster.InspectAsync(3, name)).TryGetProperty("attachment", out _),
            TimeSpan.FromSeconds(30),
            "the internal resync attachment released");
        var volume = await cluster.InspectAsync(3, name);
        Assert.All(volume.GetProperty("replicas").EnumerateArray(), r => Assert.Equal("in-sync", r.GetProperty("state").GetString()));
        Assert.Contains("attached internally to resync it", cluster[1].Log, StringComparison.Ordinal);
        Assert.Contains("resync of replica on node-2 done (rebuild)", cluster[1].Log, StringComparison.Ordinal);

        // The only original copy's node dies: node-3 attaches and reads everything from the rebuilt replica.
        await cluster[1].KillAsync();
        var remote = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        await BlockPatterns.AssertReadsBackAsync(remote, written);

        await cluster[3].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("volume", "delete", name);
    }
}
