using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Common;
using Slab.Volumes;
using Xunit;
using static Slab.Tests.VolumeLayer.VolumeControllerTests;

namespace Slab.Tests.VolumeLayer;

/// <summary>Replicas joining and leaving an open controller (ha-update), rebuilds that resume, and the replica check.</summary>
public sealed class VolumeControllerMembershipTests : IDisposable
{
    private const long RegionBytes = DirtyRegionMap.DefaultRegionBytes;
    private readonly string _mapDirectory = Path.Combine(Path.GetTempPath(), "slab-maps-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_mapDirectory))
        {
            Directory.Delete(_mapDirectory, recursive: true);
        }
    }

    /// <summary>Writes a distinct block at the start of every region, so every region holds data.</summary>
    private static async Task FillRegionsAsync(IBlockTarget target, long size, byte salt)
    {
        for (long region = 0; region < size / RegionBytes; region++)
        {
            await target.WriteAsync(region * RegionBytes, VolumeControllerTests.Block((byte)(region + salt)), BlockWriteFlags.None, default);
        }
    }

    [Fact]
    public async Task A_replica_added_online_is_rebuilt_in_full_while_writes_go_on_then_counts_for_acknowledgement()
    {
        const long size = 16 * RegionBytes;
        var (a, b, c) = (new FaultyReplica(size), new FaultyReplica(size), new FaultyReplica(size));
        var authority = new TestAuthority(1);
        authority.OutAtStart.Add("n3");
        using var controller = Open(size, authority, (a, ReplicaMode.InSync, true), (b, ReplicaMode.InSync, false));
        await FillRegionsAsync(controller, size, 1);

        Assert.True(await controller.AddReplicaAsync(new ReplicaMember("n3", "node-3", c, ReplicaMode.Rebuilding, IsLocal: false, Incarnation: "i1"), default));
        Assert.False(await controller.AddReplicaAsync(new ReplicaMember("n3", "node-3", new FaultyReplica(size), ReplicaMode.Rebuilding, IsLocal: false), default));
        await controller.WriteAsync(0, VolumeControllerTests.Block(0x55), BlockWriteFlags.None, default);
        Assert.Equal(0, c.Writes); // it receives nothing until its rebuild starts

        // Hold the copy on its first write to see the progress, then let writes and the copy race.
        c.Hold = new TaskCompletionSource();
        Assert.True(controller.TryStartResync("n3"));
        while (controller.Resync is null)
        {
            await Task.Yield();
        }

        var progress = controller.Resync!.Value;
        Assert.True(progress.IsRebuild);
        Assert.Equal(("n3", 16L), (progress.NodeId, progress.RegionsTotal));
        Assert.Equal(ReplicaMode.Rebuilding, controller.Replicas[2].Mode);
        var writer = Task.Run(async () =>
        {
            var random = new Random(3);
            for (var i = 0; i < 200; i++)
            {
                await controller.WriteAsync(random.NextInt64(size / 4096) * 4096, VolumeControllerTests.Block((byte)i), BlockWriteFlags.None, default);
            }
        });
        c.Hold.SetResult();
        c.Hold = null;
        await writer;
        await controller.WaitForResyncAsync();

        Assert.Equal(ReplicaMode.InSync, controller.Replicas[2].Mode);
        Assert.Equal([("n3", ReplicaMode.Rebuilding), ("n3", ReplicaMode.InSync)], authority.Changes);
        Assert.Equal(2, controller.Epoch); // promotion: the in-sync set grew
        await AssertSameAsync(a, c, size);
        Assert.Null(controller.Resync);

        // From now on a write waits for it like for the others.
        c.Fail = BlockError.IOError;
        await controller.WriteAsync(0, VolumeControllerTests.Block(0x66), BlockWriteFlags.None, default);
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[2].Mode);
        Assert.Equal(3, controller.Epoch);
    }

    [Fact]
    public async Task A_removal_that_stops_a_rebuild_while_its_promotion_commits_leaves_the_replica_in_sync_here_too()
    {
        const long size = 4 * RegionBytes;
        var (a, b, c) = (new FaultyReplica(size), new FaultyReplica(size), new FaultyReplica(size));
        var authority = new TestAuthority(1);
        authority.OutAtStart.Add("n3");
        using var controller = Open(size, authority, (a, ReplicaMode.InSync, true), (b, ReplicaMode.InSync, false));
        await FillRegionsAsync(controller, size, 3);
        Assert.True(await controller.AddReplicaAsync(new ReplicaMember("n3", "node-3", c, ReplicaMode.Rebuilding, IsLocal: false, Incarnation: "i1"), default));

        // The promotion is committed; before its caller hears so, n2 leaves the set (a move's replacement
        // in sync removes the replica it replaces), which stops the resync.
        authority.HoldAfterPromotion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Assert.True(controller.TryStartResync("n3"));
        while (!authority.Changes.Contains(("n3", ReplicaMode.InSync)))
        {
            await Task.Delay(1);
        }

        var removal = controller.RemoveReplicaAsync("n2", default);
        await Task.Delay(50); // the stop reaches the resync (it must not give the promotion up)
        authority.HoldAfterPromotion.SetResult();
        Assert.True(await removal);

        Assert.Equal(["n1", "n3"], controller.Replicas.Select(r => r.NodeId));
        Assert.All(controller.Replicas, r => Assert.Equal(ReplicaMode.InSync, r.Mode));
        Assert.Equal(authority.Epoch, controller.Epoch);
        await controller.WriteAsync(0, VolumeControllerTests.Block(0x77), BlockWriteFlags.None, default);
        await AssertSameAsync(a, c, size);
    }

    [Fact]
    public async Task A_rebuild_whose_source_fails_drops_it_and_copies_from_another_in_sync_replica()
    {
        const long size = 4 * RegionBytes;
        var (a, b, c) = (new FaultyReplica(size), new FaultyReplica(size), new FaultyReplica(size));
        var authority = new TestAuthority(1);
        authority.OutAtStart.Add("n3");
        using var controller = Open(size, authority, (a, ReplicaMode.InSync, true), (b, ReplicaMode.InSync, false));
        await FillRegionsAsync(controller, size, 40);
        Assert.True(await controller.AddReplicaAsync(new ReplicaMember("n3", "node-3", c, ReplicaMode.Rebuilding, IsLocal: false, Incarnation: "i2"), default));

        a.Fail = BlockError.IOError; // the local replica, the copy's first choice, has died unnoticed
        Assert.True(controller.TryStartResync("n3"));
        await controller.WaitForResyncAsync();

        Assert.Equal((ReplicaMode.Faulted, ReplicaMode.InSync, ReplicaMode.InSync), (controller.Replicas[0].Mode, controller.Replicas[1].Mode, controller.Replicas[2].Mode));
        Assert.Equal([("n1", 1L)], authority.Calls);
        await AssertSameAsync(b, c, size);
    }

    [Fact]
    public async Task A_removed_replica_gets_nothing_more_and_the_last_in_sync_one_cannot_go()
    {
        var (a, b, c) = (new FaultyReplica(), new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1);
        using var controller = Open(1 << 20, authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false), (c, ReplicaMode.InSync, false));
        await controller.WriteAsync(0, VolumeControllerTests.Block(1), BlockWriteFlags.None, default);

        Assert.True(await controller.RemoveReplicaAsync("n2", default));
        Assert.False(await controller.RemoveReplicaAsync("n2", default));
        Assert.True(b.Disposed);
        await controller.WriteAsync(4096, VolumeControllerTests.Block(2), BlockWriteFlags.None, default);
        Assert.Equal((2, 1, 2), (a.Writes, b.Writes, c.Writes));
        Assert.Equal(["n1", "n3"], controller.Replicas.Select(r => r.NodeId));

        // A failure of a replica after the removal still maps to the right replica.
        c.Fail = BlockError.IOError;
        await controller.WriteAsync(8192, VolumeControllerTests.Block(3), BlockWriteFlags.None, default);
        Assert.Equal([("n3", 1L)], authority.Calls);
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[1].Mode);

        var error = await Assert.ThrowsAsync<SlabException>(() => controller.RemoveReplicaAsync("n1", default));
        Assert.Equal(SlabErrorCode.FailedPrecondition, error.Code);
        Assert.Contains("last in-sync replica", error.Message);
        Assert.DoesNotContain(authority.Changes, ch => ch.Mode != ReplicaMode.Faulted);
    }

    [Fact]
    public async Task A_replica_that_left_the_set_elsewhere_does_not_fail_writes()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1);
        authority.Removed.Add("n2");
        using var controller = Open(1 << 20, authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false));

        b.Fail = BlockError.Closed; // its node deleted it after ha-update removed it
        await controller.WriteAsync(0, VolumeControllerTests.Block(7), BlockWriteFlags.None, default);
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[1].Mode);
        Assert.Equal(1, controller.Epoch);
        Assert.Equal(VolumeControllerTests.Block(7), await ReadAsync(a.Memory, 0));
    }

    [Fact]
    public async Task A_stopped_rebuild_saves_its_progress_and_a_new_controller_resumes_it()
    {
        const long size = 16 * RegionBytes;
        var maps = new DirtyMapStore(_mapDirectory);
        var (a, b, c) = (new FaultyReplica(size), new FaultyReplica(size), new FaultyReplica(size));
        var authority = new TestAuthority(1);
        authority.OutAtStart.Add("n3");
        var first = new VolumeController("vol1", "db", size, 1,
            [new ReplicaMember("n1", "node-1", a, ReplicaMode.InSync, IsLocal: true), new ReplicaMember("n2", "node-2", b, ReplicaMode.InSync, IsLocal: false)],
            authority, NullLogger.Instance, maps);
        await FillRegionsAsync(first, size, 10);
        Assert.True(await first.AddReplicaAsync(new ReplicaMember("n3", "node-3", c, ReplicaMode.Rebuilding, IsLocal: false, Incarnation: "i1"), default));

        // The copy blocks on its first data write; a removal of another replica stops it there.
        c.Hold = new TaskCompletionSource();
        Assert.True(first.TryStartResync("n3"));
        while (c.Waiting == 0)
        {
            await Task.Yield();
        }

        var removal = first.RemoveReplicaAsync("n2", default);
        c.Hold.SetResult();
        c.Hold = null;
        Assert.True(await removal);
        Assert.Equal(ReplicaMode.Faulted, first.Replicas.Single(r => r.NodeId == "n3").Mode);
        Assert.Equal([("n3", ReplicaMode.Rebuilding)], authority.Changes); // a stop is not a fault: the state stays "rebuilding"
        first.Dispose();
        Assert.True(c.Disposed);

        // After a restart: the replica opens as rebuilding with the same incarnation and resumes from its map.
        c.Disposed = false;
        var writesBefore = c.Writes;
        using var second = new VolumeController("vol1", "db", size, authority.Epoch,
            [new ReplicaMember("n1", "node-1", a, ReplicaMode.InSync, IsLocal: true), new ReplicaMember("n3", "node-3", c, ReplicaMode.Rebuilding, IsLocal: false, Incarnation: "i1")],
            authority, NullLogger.Instance, maps);
        Assert.True(second.TryStartResync("n3"));
        var resumed = second.Resync;
        await second.WaitForResyncAsync();

        Assert.True(resumed is null || (resumed.Value.IsRebuild && resumed.Value.RegionsTotal < 16), $"resumed with {resumed?.RegionsTotal} regions");
        Assert.True(c.Writes - writesBefore < 16, $"the resumed rebuild wrote {c.Writes - writesBefore} blocks; a full copy writes 16");
        Assert.Equal(ReplicaMode.InSync, second.Replicas[1].Mode);
        Assert.Equal(ReplicaMode.Rebuilding, authority.Changes[^2].Mode);
        await AssertSameAsync(a, c, size);
        Assert.Empty(Directory.GetFiles(_mapDirectory)); // promoted: its map is gone
    }

    [Fact]
    public async Task Check_reports_the_regions_that_differ_between_in_sync_replicas()
    {
        const long size = 8 * RegionBytes;
        var (a, b, c) = (new FaultyReplica(size), new FaultyReplica(size), new FaultyReplica(size));
        using var controller = Open(size, new TestAuthority(1), (a, ReplicaMode.InSync, true), (b, ReplicaMode.InSync, false), (c, ReplicaMode.Faulted, false));
        await controller.WriteAsync(RegionBytes, VolumeControllerTests.Block(1), BlockWriteFlags.None, default);
        await controller.WriteAsync(6 * RegionBytes, VolumeControllerTests.Block(2), BlockWriteFlags.None, default);

        var clean = await controller.CheckAsync(default);
        Assert.Equal(["node-1", "node-2"], clean.ReplicasCompared);
        Assert.Equal((size, 0L), (clean.BytesCompared, clean.DifferingCount));

        // Corrupt one replica behind the controller's back, once in a data region, once in a hole.
        await b.Memory.WriteAsync((6 * RegionBytes) + 4096, VolumeControllerTests.Block(0xEE), BlockWriteFlags.None, default);
        await b.Memory.WriteAsync(3 * RegionBytes, VolumeControllerTests.Block(9), BlockWriteFlags.None, default);
        var report = await controller.CheckAsync(default);
        Assert.Equal(2, report.DifferingCount);
        Assert.Equal([3 * RegionBytes, 6 * RegionBytes], report.DifferingRegions);
    }
}
