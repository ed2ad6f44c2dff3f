using Slab.Tests.Replication;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Common;
using Slab.Volumes;
using Xunit;

namespace Slab.Tests.VolumeLayer;

/// <summary>A memory replica with injected faults; records the epoch each request carried.</summary>
internal sealed class FaultyReplica(long size = 1 << 20) : IReplicaTarget
{
    private readonly MemoryBlockTarget _memory = new(size);
    private int _writes;
    private int _reads;
    private int _waiting;

    public MemoryBlockTarget Memory => _memory;

    /// <summary>When set, every request fails with this error (before touching the data).</summary>
    public BlockError? Fail { get; set; }

    /// <summary>When set, writes wait for it before they land.</summary>
    public TaskCompletionSource? Hold { get; set; }

    public long LastEpoch { get; private set; } = -1;

    public int Writes => Volatile.Read(ref _writes);

    public int Reads => Volatile.Read(ref _reads);

    public long Epoch { get; set; }

    public long Size => _memory.Size;

    public BlockTargetFeatures Features => _memory.Features;

    public BlockGeometry Geometry => _memory.Geometry;

    public bool Disposed { get; set; }

    /// <summary>Writes waiting for <see cref="Hold"/> now.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        Check();
        Interlocked.Increment(ref _reads);
        await _memory.ReadAsync(offset, destination, cancellationToken);
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        Check();
        if (Hold is { } hold)
        {
            Interlocked.Increment(ref _waiting);
            await hold.Task;
            Interlocked.Decrement(ref _waiting);
        }

        await _memory.WriteAsync(offset, source, flags, cancellationToken);
        Interlocked.Increment(ref _writes);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        Check();
        return _memory.FlushAsync(cancellationToken);
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        Check();
        return _memory.TrimAsync(offset, length, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        Check();
        return _memory.WriteZeroesAsync(offset, length, flags, cancellationToken);
    }

    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        Check();
        return _memory.GetExtentsAsync(offset, length, destination, cancellationToken);
    }

    public void Grow(long newSizeBytes) => _memory.Resize(newSizeBytes);

    public void Dispose() => Disposed = true;

    private void Check()
    {
        LastEpoch = Epoch;
        if (Fail is { } error)
        {
            throw new BlockTargetException(error, $"injected {error}");
        }
    }
}

/// <summary>An authority that commits drops like the Raft transition does (compare-and-set on the epoch), or fails as told.</summary>
internal sealed class TestAuthority(long epoch) : IReplicaSetAuthority
{
    private readonly Lock _lock = new();

    public long Epoch { get; private set; } = epoch;

    public List<(string Node, long Expected)> Calls { get; } = [];

    /// <summary>When set, calls fail as a proposal without quorum does.</summary>
    public bool NoQuorum { get; set; }

    /// <summary>When set, calls wait for it (to pile up concurrent failures).</summary>
    public TaskCompletionSource? Hold { get; set; }

    public List<(string Node, ReplicaMode Mode)> Changes { get; } = [];

    /// <summary>
    /// When set, a promotion (a change to in sync) commits, then its caller waits for this with its
    /// cancellation token, as a Raft proposal that committed while its caller gave up does.
    /// </summary>
    public TaskCompletionSource? HoldAfterPromotion { get; set; }

    /// <summary>Nodes whose replica was out of the in-sync set when the controller opened.</summary>
    public HashSet<string> OutAtStart { get; } = [];

    /// <summary>Nodes whose replica was removed from the set (ha-update): changes of it are answered NotAMember.</summary>
    public HashSet<string> Removed { get; } = [];

    public async Task<ReplicaChangeResult> ChangeReplicaAsync(string volumeId, string nodeId, ReplicaMode mode, long expectedEpoch, string reason, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (Removed.Contains(nodeId))
            {
                return new ReplicaChangeResult(ReplicaChangeOutcome.NotAMember, Epoch);
            }

            Changes.Add((nodeId, mode));
            if (mode == ReplicaMode.Faulted)
            {
                Calls.Add((nodeId, expectedEpoch));
            }
        }

        if (Hold is { } hold)
        {
            await hold.Task;
        }

        if (NoQuorum)
        {
            throw new SlabException(SlabErrorCode.Unavailable, "no quorum: voters node-2, node-3 unreachable");
        }

        lock (_lock)
        {
            if (expectedEpoch != Epoch)
            {
                return new ReplicaChangeResult(ReplicaChangeOutcome.Fenced, Epoch);
            }

            // The epoch moves when the replica enters or leaves the in-sync set (a node without history was in sync).
            var previous = Changes.Take(Changes.Count - 1).LastOrDefault(c => c.Node == nodeId);
            var wasInSync = previous.Node is null ? !OutAtStart.Contains(nodeId) : previous.Mode == ReplicaMode.InSync;
            if (wasInSync != (mode == ReplicaMode.InSync))
            {
                Epoch++;
            }
        }

        if (mode == ReplicaMode.InSync && HoldAfterPromotion is { } after)
        {
            await after.Task.WaitAsync(cancellationToken);
        }

        return new ReplicaChangeResult(ReplicaChangeOutcome.Committed, Epoch);
    }

    /// <summary>Another controller took the volume over.</summary>
    public void TakeOver()
    {
        lock (_lock)
        {
            Epoch++;
        }
    }
}

public sealed class VolumeControllerTests
{
    private const long Size = 1 << 20;

    private static VolumeController Open(TestAuthority? authority, params (FaultyReplica Replica, ReplicaMode Mode, bool Local)[] replicas)
        => Open(Size, authority, replicas);

    /// <summary>A controller of volume "db" over the replicas as nodes n1, n2, ... (names node-1, ...).</summary>
    internal static VolumeController Open(long size, TestAuthority? authority, params (FaultyReplica Replica, ReplicaMode Mode, bool Local)[] replicas)
        => Open(size, authority, TimeProvider.System, replicas);

    /// <summary>As <see cref="Open(long, TestAuthority?, ValueTuple{FaultyReplica, ReplicaMode, bool}[])"/> on <paramref name="time"/>'s clock.</summary>
    internal static VolumeController Open(long size, TestAuthority? authority, TimeProvider time, params (FaultyReplica Replica, ReplicaMode Mode, bool Local)[] replicas)
        => new(
            "vol1",
            "db",
            size,
            authority?.Epoch ?? 1,
            [.. replicas.Select((r, i) => new ReplicaMember($"n{i + 1}", $"node-{i + 1}", r.Replica, r.Mode, r.Local))],
            authority,
            NullLogger.Instance,
            io: new VolumeIoSettings(time, IoLimits.None));

    internal static byte[] Block(byte value)
    {
        var data = new byte[4096];
        data.AsSpan().Fill(value);
        return data;
    }

    internal static async Task<byte[]> ReadAsync(IBlockTarget target, long offset)
    {
        var data = new byte[4096];
        await target.ReadAsync(offset, data, default);
        return data;
    }

    [Fact]
    public async Task Writes_reach_every_in_sync_replica_with_the_epoch()
    {
        var (a, b, c) = (new FaultyReplica(), new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(7);
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false), (c, ReplicaMode.InSync, false));

        await controller.WriteAsync(8192, Block(3), BlockWriteFlags.ForceUnitAccess, default);
        await controller.TrimAsync(0, 4096, default);
        await controller.WriteZeroesAsync(4096, 4096, WriteZeroesFlags.None, default);
        await controller.FlushAsync(default);

        foreach (var replica in new[] { a, b, c })
        {
            Assert.Equal(Block(3), await ReadAsync(replica.Memory, 8192));
            Assert.Equal(7, replica.LastEpoch);
            Assert.Equal(1, replica.Writes);
        }

        Assert.Empty(authority.Calls);
        Assert.False(controller.Features.HasFlag(BlockTargetFeatures.ReadOnly));
    }

    [Fact]
    public async Task A_failing_replica_is_dropped_by_an_epoch_bump_before_the_write_is_acknowledged()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1);
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false));
        b.Fail = BlockError.IOError;

        authority.Hold = new TaskCompletionSource();
        var write = controller.WriteAsync(0, Block(5), BlockWriteFlags.None, default).AsTask();
        Assert.False(write.IsCompleted, "the write must wait until the drop is committed");
        authority.Hold.SetResult();
        await write;

        Assert.Equal([("n2", 1L)], authority.Calls);
        Assert.Equal(2, controller.Epoch);
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[1].Mode);

        // From now on the dropped replica gets nothing and the others carry the new epoch.
        b.Fail = null;
        await controller.WriteAsync(4096, Block(6), BlockWriteFlags.None, default);
        Assert.Equal(2, a.LastEpoch);
        Assert.Equal(0, b.Writes);
        Assert.Equal(Block(6), await ReadAsync(controller, 4096));
        Assert.Single(authority.Calls);
    }

    [Fact]
    public async Task Without_quorum_a_write_that_a_replica_missed_fails_and_the_replica_stays_in_the_set()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1) { NoQuorum = true };
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false));
        b.Fail = BlockError.IOError;

        var error = await Assert.ThrowsAsync<BlockTargetException>(() => controller.WriteAsync(0, Block(1), BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.IOError, error.Error);
        Assert.Contains("not acknowledged", error.Message);
        Assert.Contains("no quorum", error.Message);
        Assert.Equal(1, controller.Epoch);
        Assert.All(controller.Replicas, r => Assert.Equal(ReplicaMode.InSync, r.Mode));
    }

    [Fact]
    public async Task The_last_in_sync_replica_failing_fails_the_write()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1);
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false));
        a.Fail = BlockError.IOError;
        b.Fail = BlockError.NoSpace;

        var error = await Assert.ThrowsAsync<BlockTargetException>(() => controller.WriteAsync(0, Block(1), BlockWriteFlags.None, default).AsTask());
        Assert.Contains("last in-sync replica", error.Message);
        Assert.Single(authority.Calls); // the first was dropped, the second could not be
        Assert.Equal(1, controller.Replicas.Count(r => r.Mode == ReplicaMode.InSync));
    }

    [Fact]
    public async Task A_controller_whose_epoch_was_taken_over_is_fenced_and_drops_nothing()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1);
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false));

        // A replica that refuses the epoch: fenced, never a reason to drop anyone.
        a.Fail = BlockError.Fenced;
        var fenced = await Assert.ThrowsAsync<BlockTargetException>(() => controller.WriteAsync(0, Block(1), BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.Fenced, fenced.Error);
        Assert.Empty(authority.Calls);

        // A failing replica when the volume's epoch has moved on: the drop is refused as fenced.
        a.Fail = null;
        b.Fail = BlockError.IOError;
        authority.TakeOver();
        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => controller.WriteAsync(0, Block(1), BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.Fenced, refused.Error);
        Assert.All(controller.Replicas, r => Assert.Equal(ReplicaMode.InSync, r.Mode));
    }

    [Fact]
    public async Task Concurrent_failures_of_one_replica_make_one_drop()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1) { Hold = new TaskCompletionSource() };
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.InSync, false));
        b.Fail = BlockError.IOError;

        var writes = Enumerable.Range(0, 16).Select(i => controller.WriteAsync(i * 4096L, Block((byte)i), BlockWriteFlags.None, default).AsTask()).ToArray();
        authority.Hold.SetResult();
        await Task.WhenAll(writes);

        Assert.Single(authority.Calls);
        for (var i = 0; i < 16; i++)
        {
            Assert.Equal(Block((byte)i), await ReadAsync(a.Memory, i * 4096L));
        }
    }

    [Fact]
    public async Task Reads_prefer_the_local_replica_and_move_on_when_one_fails()
    {
        var (remote1, local, remote2) = (new FaultyReplica(), new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(1);
        using var controller = Open(authority, (remote1, ReplicaMode.InSync, false), (local, ReplicaMode.InSync, true), (remote2, ReplicaMode.InSync, false));
        await controller.WriteAsync(0, Block(9), BlockWriteFlags.None, default);

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(Block(9), await ReadAsync(controller, 0));
        }

        Assert.Equal((0, 4, 0), (remote1.Reads, local.Reads, remote2.Reads));

        local.Fail = BlockError.IOError;
        Assert.Equal(Block(9), await ReadAsync(controller, 0));
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[1].Mode);
        Assert.Equal(2, controller.Epoch);

        // Without a local replica, reads spread over the in-sync ones.
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(Block(9), await ReadAsync(controller, 0));
        }

        Assert.True(remote1.Reads >= 2 && remote2.Reads >= 2, $"reads {remote1.Reads}/{remote2.Reads}");
    }

    [Fact]
    public async Task Faulted_replicas_at_open_receive_nothing_and_requests_errors_do_not_drop_replicas()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        var authority = new TestAuthority(4);
        using var controller = Open(authority, (a, ReplicaMode.InSync, false), (b, ReplicaMode.Faulted, false));
        await controller.WriteAsync(0, Block(1), BlockWriteFlags.None, default);
        Assert.Equal(0, b.Writes);

        var outOfRange = await Assert.ThrowsAsync<BlockTargetException>(() => controller.WriteAsync(Size, Block(1), BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.OutOfRange, outOfRange.Error);
        Assert.Empty(authority.Calls);
    }

    internal static async Task AssertSameAsync(FaultyReplica expected, FaultyReplica actual, long size)
    {
        var a = new byte[size];
        var b = new byte[size];
        await expected.Memory.ReadAsync(0, a, default);
        await actual.Memory.ReadAsync(0, b, default);
        Assert.True(a.AsSpan().SequenceEqual(b), "the replicas differ");
    }

    [Fact]
    public async Task A_returning_replica_is_resynced_by_delta_and_promoted_by_an_epoch_bump()
    {
        const long size = 16 << 20; // 16 regions of 1 MiB
        var (a, b) = (new FaultyReplica(size), new FaultyReplica(size));
        var authority = new TestAuthority(1);
        using var controller = Open(size, authority, (a, ReplicaMode.InSync, true), (b, ReplicaMode.InSync, false));
        for (var region = 0; region < 16; region++)
        {
            await controller.WriteAsync(region * (1L << 20), Block((byte)region), BlockWriteFlags.None, default);
        }

        b.Fail = BlockError.IOError;
        await controller.WriteAsync(3L << 20, Block(0xA3), BlockWriteFlags.None, default); // drops b
        await controller.WriteAsync((9L << 20) + 8192, Block(0xA9), BlockWriteFlags.None, default);
        b.Fail = null;
        var writesBefore = b.Writes;

        Assert.True(controller.TryStartResync("n2"));
        await controller.WaitForResyncAsync();

        Assert.Equal(ReplicaMode.InSync, controller.Replicas[1].Mode);
        Assert.Equal([("n2", ReplicaMode.Faulted), ("n2", ReplicaMode.CatchingUp), ("n2", ReplicaMode.InSync)], authority.Changes);
        Assert.Equal(3, controller.Epoch);
        await AssertSameAsync(a, b, size);
        Assert.True(b.Writes - writesBefore <= 4, $"a delta resync of 2 dirty regions made {b.Writes - writesBefore} writes");
        Assert.False(controller.TryStartResync("n2"));
    }

    /// <summary>Two replicas: n1 in sync, n2 faulted when the controller opened (nothing known about what it misses).</summary>
    private static (FaultyReplica A, FaultyReplica B, TestAuthority Authority, VolumeController Controller) OpenWithFaultedSecond(long size, TimeProvider? time = null)
    {
        var (a, b) = (new FaultyReplica(size), new FaultyReplica(size));
        var authority = new TestAuthority(1);
        authority.OutAtStart.Add("n2");
        var controller = Open(size, authority, time ?? TimeProvider.System, (a, ReplicaMode.InSync, false), (b, ReplicaMode.Faulted, false));
        return (a, b, authority, controller);
    }

    [Fact]
    public async Task Writes_during_a_resync_reach_the_replica_behind_the_cursor_and_nothing_is_lost()
    {
        const long size = 32 << 20;
        var (a, b, authority, controller) = OpenWithFaultedSecond(size);
        using var disposeController = controller;
        var random = new Random(7);
        for (var i = 0; i < 64; i++)
        {
            await controller.WriteAsync(random.NextInt64(size / 4096) * 4096, Block((byte)i), BlockWriteFlags.None, default);
        }

        // No map is known for a replica that was faulted before this controller opened: a full copy.
        Assert.True(controller.TryStartResync("n2"));
        var writer = Task.Run(async () =>
        {
            for (var i = 0; i < 400; i++)
            {
                await controller.WriteAsync(random.NextInt64(size / 4096) * 4096, Block((byte)(i + 100)), BlockWriteFlags.None, default);
            }
        });
        await writer;
        await controller.WaitForResyncAsync();

        Assert.Equal(ReplicaMode.InSync, controller.Replicas[1].Mode);
        await AssertSameAsync(a, b, size);
    }

    [Fact]
    public async Task A_resync_that_fails_leaves_the_replica_faulted_and_a_later_one_finishes_it()
    {
        const long size = 8 << 20;
        var time = new ManualTimeProvider();
        var (a, b, authority, controller) = OpenWithFaultedSecond(size, time);
        using var disposeController = controller;
        await controller.WriteAsync(0, Block(1), BlockWriteFlags.None, default);

        b.Fail = BlockError.IOError;
        Assert.True(controller.TryStartResync("n2"));
        await controller.WaitForResyncAsync();
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[1].Mode);
        Assert.Equal(1, controller.Epoch);

        // It failed: the next attempt waits 1 s, the one after a second failure 2 s.
        Assert.False(controller.TryStartResync("n2"));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(controller.TryStartResync("n2"));
        await controller.WaitForResyncAsync();
        Assert.Equal(ReplicaMode.Faulted, controller.Replicas[1].Mode);
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(controller.TryStartResync("n2"));
        time.Advance(TimeSpan.FromSeconds(1));

        b.Fail = null;
        Assert.True(controller.TryStartResync("n2"));
        await controller.WaitForResyncAsync();
        Assert.Equal(ReplicaMode.InSync, controller.Replicas[1].Mode);
        await AssertSameAsync(a, b, size);
    }

    [Fact]
    public void Resync_retries_back_off_from_one_second_to_a_minute()
    {
        Assert.Equal(TimeSpan.Zero, VolumeController.ResyncRetryDelay(0));
        Assert.Equal([1, 2, 4, 8, 16, 32, 60, 60], Enumerable.Range(1, 8).Select(f => (int)VolumeController.ResyncRetryDelay(f).TotalSeconds));
        Assert.Equal(VolumeController.MaxResyncRetryDelay, VolumeController.ResyncRetryDelay(int.MaxValue));
    }

    [Fact]
    public void Dirty_maps_round_trip_and_refuse_what_is_not_theirs()
    {
        var map = new DirtyRegionMap(10L << 20);
        Assert.True(map.Mark((3L << 20) + 5, 4096));
        Assert.False(map.Mark(3L << 20, 1));
        Assert.True(map.Mark((5L << 20) - 1, 2)); // straddles regions 4 and 5
        Assert.Equal(3, map.DirtyCount);

        var decoded = DirtyRegionMap.Decode(map.Encode(), 12L << 20)!;
        Assert.Equal([3L, 4L, 5L, 10L, 11L], Enumerable.Range(0, 12).Where(r => decoded.IsSet(r)).Select(r => (long)r));
        Assert.Null(DirtyRegionMap.Decode(map.Encode(), 4L << 20)); // saved for a larger volume
        Assert.Null(DirtyRegionMap.Decode(new byte[8], 10L << 20));
        Assert.True(decoded.TryTake(3));
        Assert.False(decoded.TryTake(3));
        Assert.Equal(4, decoded.NextSet(0));
    }

    [Fact]
    public void A_replica_set_needs_an_in_sync_member_and_distinct_nodes()
    {
        Assert.Throws<ArgumentException>(() => Open(null, (new FaultyReplica(), ReplicaMode.Faulted, false)));
        Assert.Throws<ArgumentException>(() => new VolumeController(
            "v", "v", Size, 1,
            [new ReplicaMember("n1", "a", new FaultyReplica(), ReplicaMode.InSync, false), new ReplicaMember("n1", "b", new FaultyReplica(), ReplicaMode.InSync, false)],
            null, NullLogger.Instance));
    }

    [Fact]
    public void Disposing_the_controller_disposes_every_replica()
    {
        var (a, b) = (new FaultyReplica(), new FaultyReplica());
        Open(new TestAuthority(1), (a, ReplicaMode.InSync, false), (b, ReplicaMode.Faulted, false)).Dispose();
        Assert.True(a.Disposed && b.Disposed);
    }
}
