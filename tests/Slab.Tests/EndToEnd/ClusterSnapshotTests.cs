using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;
using V1 = Slab.Api.V1;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Snapshots, clones and restores of replicated volumes with real slabd processes: a snapshot of an
/// attached repl-3 volume is taken at one write boundary on every in-sync replica (asked of another
/// node, forwarded to the controller), clones of it and of the live volume read what they should from
/// any node, a restore of the detached volume brings every replica back (a replica whose node was down
/// is rebuilt from the restored ones), deletes reach every node, and a volume holds 256 snapshots.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterSnapshotTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    private static long OffsetOf(int i) => (i * (3L << 20)) + (i * Block);

    private static string SnapshotFile(SlabNode node, string volumeId, string snapshotId)
        => Path.Combine(Path.GetDirectoryName(LocalCluster.ReplicaFile(node, volumeId))!, "snapshots", snapshotId);

    private static async Task<string> SnapshotIdAsync(SlabNode node, string volume, string snapshot)
    {
        var list = await node.CliJsonAsync("volume", "snapshot", "list", volume);
        return list.EnumerateArray().Single(s => s.GetProperty("name").GetString() == snapshot).GetProperty("id").GetString()!;
    }

    [Fact]
    public async Task Snapshot_clone_and_restore_of_a_replicated_volume_work_from_any_node()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("snap");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "3");
        var volumeId = (await cluster.InspectAsync(1, name)).GetProperty("id").GetString()!;
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var before = await BlockPatterns.WriteAsync(device, 8, OffsetOf, seed: 100);

        // Asked of node-2, taken by node-1's controller (writes held, every replica reflinked).
        await cluster[2].CliOkAsync("volume", "snapshot", "create", name, "--name", "s1");
        var after = await BlockPatterns.WriteAsync(device, 8, OffsetOf, seed: 200);
        var listed = LocalCluster.First(await cluster[3].CliJsonAsync("volume", "snapshot", "list", name));
        Assert.Equal("s1", listed.GetProperty("name").GetString());
        Assert.Equal(["node-1", "node-2", "node-3"], listed.GetProperty("nodes").EnumerateArray().Select(n => n.GetString()!).Order());
        var snapshotId = listed.GetProperty("id").GetString()!;
        foreach (var i in cluster.Indexes)
        {
            // Every replica's copy holds the writes before the snapshot, none after.
            var copy = SnapshotFile(cluster[i], volumeId, snapshotId);
            foreach (var (offset, data) in before)
            {
                Assert.Equal(data, await DirectBlockIo.ReadAsync(copy, offset, data.Length));
            }
        }

        var refused = await cluster[3].CliAsync("volume", "restore", name, "--snapshot", "s1");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("detach it before restoring", refused.Stderr, StringComparison.Ordinal);

        // A clone of the snapshot (made on its holders, in sync) and one of the live volume (through a snapshot taken for it).
        var fromSnapshot = LocalCluster.UniqueName("c-snap");
        await cluster[3].CliOkAsync("volume", "clone", $"{name}@s1", "--name", fromSnapshot);
        var fromVolume = LocalCluster.UniqueName("c-live");
        await cluster[2].CliOkAsync("volume", "clone", name, "--name", fromVolume);
        var clone = await cluster.InspectAsync(1, fromSnapshot);
        Assert.Equal($"{name}@s1", clone.GetProperty("source").GetString());
        Assert.Equal("up", clone.GetProperty("state").GetString());
        Assert.Single((await cluster[1].CliJsonAsync("volume", "snapshot", "list", name)).EnumerateArray()); // the clone's own snapshot is gone

        var cloneDevice = (await cluster[3].CliOkAsync("host", "attach", fromSnapshot)).Trim();
        await BlockPatterns.AssertReadsBackAsync(cloneDevice, before);
        await cluster[3].CliOkAsync("host", "detach", fromSnapshot);
        var liveDevice = (await cluster[2].CliOkAsync("host", "attach", fromVolume)).Trim();
        await BlockPatterns.AssertReadsBackAsync(liveDevice, after);
        await cluster[2].CliOkAsync("host", "detach", fromVolume);

        // Restore of the detached volume, asked of a node that is not its last host.
        await cluster[1].CliOkAsync("host", "detach", name);
        output.WriteLine(await cluster[3].CliOkAsync("volume", "restore", name, "--snapshot", "s1"));
        var restored = await cluster.InspectAsync(2, name);
        Assert.All(restored.GetProperty("replicas").EnumerateArray(), r => Assert.Equal("in-sync", r.GetProperty("state").GetString()));
        Assert.False(restored.TryGetProperty("attachment", out _));
        Assert.Contains("no differences", await cluster[2].CliOkAsync("volume", "check", name), StringComparison.Ordinal);
        var again = (await cluster[2].CliOkAsync("host", "attach", name)).Trim();
        await BlockPatterns.AssertReadsBackAsync(again, before);
        await cluster[2].CliOkAsync("host", "detach", name);

        // Deleting the snapshot removes every node's copy.
        await cluster[1].CliOkAsync("volume", "snapshot", "delete", name, "--name", "s1");
        await Poll.UntilAsync(() => cluster.Indexes.All(i => !File.Exists(SnapshotFile(cluster[i], volumeId, snapshotId))), TimeSpan.FromSeconds(30), "every node drops its copy");

        foreach (var volume in new[] { name, fromSnapshot, fromVolume })
        {
            await cluster[1].CliOkAsync("volume", "delete", volume);
        }
    }

    [Fact]
    public async Task A_restore_while_a_replica_node_is_down_rebuilds_that_replica_from_the_restored_ones()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("rest");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "3");
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var before = await BlockPatterns.WriteAsync(device, 6, OffsetOf, seed: 300);
        await cluster[1].CliOkAsync("volume", "snapshot", "create", name, "--name", "base");
        await BlockPatterns.WriteAsync(device, 6, OffsetOf, seed: 400);
        await cluster[1].CliOkAsync("host", "detach", name);

        // A snapshot of the detached volume is taken too (held by an internal attachment).
        await cluster[2].CliOkAsync("volume", "snapshot", "create", name, "--name", "detached");
        Assert.Equal(2, (await cluster[2].CliJsonAsync("volume", "snapshot", "list", name)).GetArrayLength());

        await cluster[3].KillAsync();
        await Poll.UntilAsync(
            async () => (await cluster.StatusesAsync(1)).GetValueOrDefault("node-3") == "offline", TimeSpan.FromSeconds(60), "node-3 is seen offline");
        output.WriteLine(await cluster[2].CliOkAsync("volume", "restore", name, "--snapshot", "base"));
        var volume = await cluster.InspectAsync(1, name);
        var node3 = volume.GetProperty("replicas").EnumerateArray().Single(r => r.GetProperty("nodeName").GetString() == "node-3");
        Assert.Equal("rebuilding", node3.GetProperty("state").GetString());

        // It returns and is rebuilt (an internal resync attachment copies the restored data to it).
        await cluster.RestartAsync(3);
        await Poll.UntilAsync(
            async () => (await cluster.InspectAsync(1, name)).GetProperty("replicas").EnumerateArray().All(r => r.GetProperty("state").GetString() == "in-sync"),
            TimeSpan.FromSeconds(120),
            "node-3's replica is rebuilt");
        Assert.Contains("no differences", await cluster[1].CliOkAsync("volume", "check", name), StringComparison.Ordinal);

        // The dead node's replica reads back the restored data on its own.
        await cluster[1].KillAsync();
        var remote = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        await BlockPatterns.AssertReadsBackAsync(remote, before);
        await cluster[3].CliOkAsync("host", "detach", name);
        await cluster[3].CliOkAsync("volume", "delete", name);
    }

    [Fact]
    public async Task An_attached_replicated_volume_holds_256_snapshots_each_at_its_own_write_boundary()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(2);
        var name = LocalCluster.UniqueName("many");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2");
        var volumeId = (await cluster.InspectAsync(1, name)).GetProperty("id").GetString()!;
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        using var channel = ApiChannel.ForUnixSocket(cluster[2].ApiSocket);
        var snapshots = new V1.Snapshots.SnapshotsClient(channel);
        var block = new byte[Block];
        var ids = new string[256];
        for (var i = 0; i < ids.Length; i++)
        {
            // Each snapshot sees a different block 0 (asked of node-2, taken by node-1's controller).
            block.AsSpan().Fill((byte)i);
            await DirectBlockIo.WriteCheckedAsync(device, 0, block);
            ids[i] = (await snapshots.CreateAsync(new V1.CreateSnapshotRequest { Volume = name, Name = $"s{i:D3}" })).Id;
        }

        var listed = await snapshots.EnumerateAsync(new V1.EnumerateSnapshotsRequest { Volume = name });
        Assert.Equal(256, listed.Snapshots.Count);
        foreach (var i in new[] { 0, 1, 127, 255 })
        {
            foreach (var node in cluster.Indexes)
            {
                var copy = await DirectBlockIo.ReadAsync(SnapshotFile(cluster[node], volumeId, ids[i]), 0, Block);
                Assert.All(copy, b => Assert.Equal((byte)i, b));
            }
        }

        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].CliOkAsync("volume", "delete", name);
    }

    private static async Task<string[]> HoldersAsync(SlabNode node, string volume, string snapshot)
    {
        var list = await node.CliJsonAsync("volume", "snapshot", "list", volume);
        var listed = list.EnumerateArray().Single(s => s.GetProperty("name").GetString() == snapshot);
        return listed.TryGetProperty("nodes", out var nodes) ? [.. nodes.EnumerateArray().Select(n => n.GetString()!).Order()] : [];
    }

    [Fact]
    public async Task A_replica_added_after_snapshots_were_taken_gets_copies_of_them_that_outlive_the_replicas_they_were_taken_on()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(2);
        var name = LocalCluster.UniqueName("carry");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "1", "--nodes", "node-1");
        var volumeId = (await cluster.InspectAsync(1, name)).GetProperty("id").GetString()!;
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var first = await BlockPatterns.WriteAsync(device, 6, OffsetOf, seed: 500);
        await cluster[1].CliOkAsync("volume", "snapshot", "create", name, "--name", "s1");
        var second = await BlockPatterns.WriteAsync(device, 3, OffsetOf, seed: 600); // the first 3 blocks change, the others stay as in s1
        second = [.. second, .. first.Skip(3)];
        await cluster[1].CliOkAsync("volume", "snapshot", "create", name, "--name", "s2");
        await BlockPatterns.WriteAsync(device, 6, OffsetOf, seed: 700);
        await cluster[1].CliOkAsync("host", "detach", name);

        // A new replica on node-2 is rebuilt from node-1's, then copies both snapshots from node-1's copies.
        output.WriteLine(await cluster[2].CliOkAsync("volume", "ha-update", name, "--repl", "2", "--node", "node-2", "--wait"));
        await Poll.UntilAsync(
            async () => (await HoldersAsync(cluster[2], name, "s1")).Contains("node-2") && (await HoldersAsync(cluster[2], name, "s2")).Contains("node-2"),
            TimeSpan.FromSeconds(60),
            "node-2's replica holds copies of s1 and s2");
        var copied = cluster[2].Log.Split('\n').Where(l => l.Contains("copied snapshot", StringComparison.Ordinal)).ToList();
        output.WriteLine(string.Join('\n', copied));

        // s2 is read only where node-1's copy of it no longer shares blocks with its copy of s1: the 3 blocks written between them.
        Assert.Contains(copied, l => l.Contains("snapshot s2 ", StringComparison.Ordinal) && l.Contains($": {3 * Block} bytes read, {3 * Block} bytes written", StringComparison.Ordinal));
        foreach (var (snapshot, expected) in new[] { ("s1", first), ("s2", second) })
        {
            var copy = SnapshotFile(cluster[2], volumeId, await SnapshotIdAsync(cluster[2], name, snapshot));
            foreach (var (offset, data) in expected)
            {
                Assert.Equal(data, await DirectBlockIo.ReadAsync(copy, offset, data.Length));
            }
        }

        // The replica the snapshots were taken on leaves: they live on in node-2's copies.
        await cluster[2].CliOkAsync("volume", "ha-update", name, "--repl", "1", "--node", "node-1");
        Assert.Equal(["node-2"], await HoldersAsync(cluster[2], name, "s1"));
        Assert.Equal(["node-2"], await HoldersAsync(cluster[2], name, "s2"));
        Assert.DoesNotContain("no replica holds this snapshot", await cluster[2].CliOkAsync("status"), StringComparison.Ordinal);

        var clone = LocalCluster.UniqueName("c");
        await cluster[1].CliOkAsync("volume", "clone", $"{name}@s1", "--name", clone);
        var cloneDevice = (await cluster[2].CliOkAsync("host", "attach", clone)).Trim();
        await BlockPatterns.AssertReadsBackAsync(cloneDevice, first);
        await cluster[2].CliOkAsync("host", "detach", clone);
        await cluster[2].CliOkAsync("volume", "delete", clone);

        output.WriteLine(await cluster[2].CliOkAsync("volume", "restore", name, "--snapshot", "s2"));
        var restored = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        await BlockPatterns.AssertReadsBackAsync(restored, second);
        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[2].CliOkAsync("volume", "delete", name);
    }
}
