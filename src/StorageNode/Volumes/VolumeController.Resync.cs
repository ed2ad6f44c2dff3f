using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Buffers;
using Slab.Common;

namespace Slab.Volumes;

// Dirty tracking and resync. While a replica is faulted, every acknowledged write it did not get is
// marked in its DirtyRegionMap, which is saved (DirtyMapStore) before a write to a region not yet
// marked is acknowledged, so the map survives a crash of this node. A resync moves the replica to
// catching-up, copies the marked regions from an in-sync replica (all regions when no map is known),
// and promotes it by an epoch bump under a write pause once nothing is left to copy.
//
// Writes during a resync reach the catching-up replica only where no region they touch is still to
// be copied or being copied ("behind the copy cursor"); elsewhere they are marked again and copied
// later. The copier never copies a region while a write to it is in flight, so a copy can never
// carry older data over a newer write.
public sealed partial class VolumeController
{
    private readonly DirtyMapStore? _dirtyMaps;
    private readonly CopyThrottle? _copyThrottle;
    private TrackedMap?[] _maps = [];
    private ResyncRun? _resync;
    private CancellationTokenSource? _resyncStop;
    private Task _resyncTask = Task.CompletedTask;

    /// <summary>
    /// Starts resyncing the faulted replica on <paramref name="nodeId"/> in the background unless a
    /// resync runs already. True when one was started. The resync ends by promoting the replica (epoch
    /// bump) or, when it fails, with the replica faulted again (its map kept for the next try).
    /// </summary>
    public bool TryStartResync(string nodeId)
    {
        if (_authority is null || Volatile.Read(ref _resync) is not null || !_resyncTask.IsCompleted || IsBackingOff(nodeId))
        {
            return false;
        }

        var view = Volatile.Read(ref _view);
        var slot = Array.FindIndex(view.Slots, s => s.NodeId == nodeId);
        if (slot < 0 || view.Modes[slot] != ReplicaMode.Faulted)
        {
            return false;
        }

        var stop = new CancellationTokenSource();
        Volatile.Write(ref _resyncStop, stop);
        _resyncTask = Task.Run(() => ResyncAsync(slot, stop.Token));
        return true;
    }

    /// <summary>
    /// How long after its <paramref name="failures"/>-th failure in a row a replica's resync waits
    /// before it may start again: 1 s, doubling, at most <see cref="MaxResyncRetryDelay"/>. A replica
    /// whose node is online but refuses (a firewall, a port clash) is not retried every second forever.
    /// </summary>
    internal static TimeSpan ResyncRetryDelay(int failures) =>
        failures <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds(Math.Min(MaxResyncRetryDelay.TotalSeconds, 1L << Math.Min(failures - 1, 16)));

    /// <summary>The longest wait between two attempts to resync a replica that keeps failing.</summary>
    internal static readonly TimeSpan MaxResyncRetryDelay = TimeSpan.FromSeconds(60);

    /// <summary>Consecutive failures of resyncs to a replica, by node id; cleared when one promotes it. Under its own lock.</summary>
    private readonly Dictionary<string, ResyncFailures> _resyncFailures = new(StringComparer.Ordinal);

    private sealed record ResyncFailures(int Count, long RetryAt, string Reason);

    private bool IsBackingOff(string nodeId)
    {
        lock (_resyncFailures)
        {
            return _resyncFailures.TryGetValue(nodeId, out var failures) && _time.GetTimestamp() < failures.RetryAt;
        }
    }

    /// <summary>
    /// Counts a failed resync of <paramref name="nodeId"/>'s replica and logs it: a warning the first
    /// time and whenever the reason changes, at debug level while it repeats.
    /// </summary>
    private void RecordResyncFailure(string nodeId, string nodeName, string reason)
    {
        ResyncFailures? last;
        ResyncFailures next;
        lock (_resyncFailures)
        {
            last = _resyncFailures.GetValueOrDefault(nodeId);
            var count = (last?.Count ?? 0) + 1;
            var delay = ResyncRetryDelay(count);
            next = new ResyncFailures(count, _time.GetTimestamp() + (long)(delay.TotalSeconds * _time.TimestampFrequency), reason);
            _resyncFailures[nodeId] = next;
        }

        if (last is null || last.Reason != reason)
        {
            LogCatchUpFailed(_logger, VolumeName, nodeName, reason);
        }
        else
        {
            var seconds = ResyncRetryDelay(next.Count).TotalSeconds;
            LogCatchUpFailedAgain(_logger, VolumeName, nodeName, next.Count, seconds, reason);
        }
    }

    private void ClearResyncFailures(string nodeId)
    {
        lock (_resyncFailures)
        {
            _resyncFailures.Remove(nodeId);
        }
    }

    /// <summary>Waits for the resync under way (if any) to end; for shutdown and tests.</summary>
    public Task WaitForResyncAsync() => _resyncTask;

    /// <summary>The resync under way, if any: whose, how far, how fast.</summary>
    public ResyncProgress? Resync
    {
        get
        {
            if (Volatile.Read(ref _resync) is not { } run)
            {
                return null;
            }

            var slot = Volatile.Read(ref _view).Slots[run.Slot];
            return new ResyncProgress(
                slot.NodeId,
                slot.NodeName,
                run.Mode == ReplicaMode.Rebuilding,
                run.RegionsTotal,
                run.Map.Map.DirtyCount,
                (long)run.Map.Map.RegionBytes,
                Interlocked.Read(ref run.BytesCopied),
                System.Diagnostics.Stopwatch.GetElapsedTime(run.Started));
        }
    }

    /// <summary>Stops the resync under way (if any) and waits for it to end; the replica keeps its mode in the cluster state and its map, so the next resync resumes.</summary>
    private async Task StopResyncAsync()
    {
        if (Volatile.Read(ref _resyncStop) is { } stop)
        {
            await stop.CancelAsync().ConfigureAwait(false);
        }

        try
        {
            await _resyncTask.ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or BlockTargetException or SlabException or IOException)
        {
            // the resync logged its own end
        }
    }

    private void InitializeMaps(IReadOnlyList<ReplicaMember> members)
    {
        for (var i = 0; i < members.Count; i++)
        {
            if (members[i].Mode != ReplicaMode.InSync && _dirtyMaps?.Load(VolumeId, _view.Slots[i].MapKey, Size) is { } saved)
            {
                SetMap(i, new TrackedMap(saved) { SavedGeneration = saved.Generation });
            }
        }
    }

    /// <summary>
    /// Publishes slot <paramref name="index"/>'s map (null: untracked) by copy-on-write. The array
    /// stays empty while no replica is tracked, so writes skip marking without looking further.
    /// Called under the change lock, or before the controller is shared.
    /// </summary>
    private void SetMap(int index, TrackedMap? map)
    {
        var maps = new TrackedMap?[Volatile.Read(ref _view).Slots.Length];
        Volatile.Read(ref _maps).CopyTo(maps, 0);
        maps[index] = map;
        Volatile.Write(ref _maps, Array.TrueForAll(maps, m => m is null) ? [] : maps);
    }

    /// <summary>An in-sync replica was dropped (under the change lock, before the write that dropped it is acknowledged): track what it misses.</summary>
    partial void OnReplicaDropped(string nodeId)
    {
        var view = Volatile.Read(ref _view);
        var index = Array.FindIndex(view.Slots, s => s.NodeId == nodeId);
        var tracked = new TrackedMap(new DirtyRegionMap(Size));
        try
        {
            // Saved empty now: its existence proves that tracking began when the replica was dropped.
            _dirtyMaps?.Save(VolumeId, view.Slots[index].MapKey, tracked.Map);
        }
        catch (IOException e)
        {
            // Without a saved map a resync after a crash copies everything: safe, only slower.
            LogMapNotSaved(_logger, VolumeName, view.Slots[index].NodeName, e.Message);
        }

        SetMap(index, tracked);
    }

    /// <summary>
    /// After a write was acknowledged by the in-sync replicas: marks it in the map of every tracked
    /// replica that did not get it (bit i of <paramref name="received"/> clear) and saves maps that
    /// gained a region, before the write may be acknowledged.
    /// </summary>
    private async ValueTask MarkMissedAsync(int received, long offset, long length, CancellationToken cancellationToken)
    {
        var maps = Volatile.Read(ref _maps);
        for (var i = 0; i < maps.Length; i++)
        {
            if (maps[i] is { } tracked && (received & (1 << i)) == 0 && tracked.Map.Mark(offset, length))
            {
                await SaveMapAsync(i, tracked, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// <paramref name="tracked"/>'s map as it must be saved: with the regions a running resync is
    /// copying still marked. Encoded before those regions are read: a region taken for copying after
    /// the encoding is still set in it; one taken before is added back (not copied yet).
    /// </summary>
    private byte[] EncodeForSave(TrackedMap tracked)
    {
        var bytes = tracked.Map.Encode();
        if (Volatile.Read(ref _resync) is { } run && run.Map == tracked)
        {
            foreach (var copying in run.CopyingRegions)
            {
                DirtyRegionMap.MarkEncoded(bytes, copying);
            }
        }

        return bytes;
    }

    /// <summary>Saves <paramref name="tracked"/> unless a save that began after its latest mark has done so already.</summary>
    private async ValueTask SaveMapAsync(int index, TrackedMap tracked, CancellationToken cancellationToken)
    {
        if (_dirtyMaps is null)
        {
            return;
        }

        var wanted = tracked.Map.Generation;
        await tracked.SaveLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (tracked.SavedGeneration >= wanted)
            {
                return;
            }

            var generation = tracked.Map.Generation;
            var key = Volatile.Read(ref _view).Slots[index].MapKey;
            try
            {
                _dirtyMaps.Save(VolumeId, key, EncodeForSave(tracked));
            }
            catch (IOException e)
            {
                // A stale saved map would under-report after a crash: remove it (a missing map means a full copy).
                try
                {
                    _dirtyMaps.Delete(VolumeId, key);
                }
                catch (IOException)
                {
                    throw new BlockTargetException(BlockError.IOError, $"volume '{VolumeName}': cannot record what the replica {key} misses: {e.Message}", e);
                }
            }

            tracked.SavedGeneration = generation;
        }
        finally
        {
            tracked.SaveLock.Release();
        }
    }

    private async Task ResyncAsync(int slot, CancellationToken cancellationToken)
    {
        var (nodeId, nodeName) = (Volatile.Read(ref _view).Slots[slot].NodeId, Volatile.Read(ref _view).Slots[slot].NodeName);
        ResyncRun? run = null;
        try
        {
            await _changeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var view = Volatile.Read(ref _view);
                if (view.Modes[slot] != ReplicaMode.Faulted)
                {
                    return;
                }

                var maps = Volatile.Read(ref _maps);
                var tracked = maps.Length > 0 ? maps[slot] : null;
                var full = tracked is null;
                if (tracked is null)
                {
                    // Nothing is known about what it misses (new, dropped by another controller, or its map was lost): copy everything.
                    tracked = new TrackedMap(new DirtyRegionMap(Size));
                    tracked.Map.MarkAll();
                    SetMap(slot, tracked);
                }

                // A new replica's copy, even resumed from a saved map, is a rebuild.
                var mode = full || view.Slots[slot].NeedsRebuild ? ReplicaMode.Rebuilding : ReplicaMode.CatchingUp;
                var result = await _authority!.ChangeReplicaAsync(VolumeId, view.Slots[slot].NodeId, mode, view.Epoch, full ? "rebuild" : "resync", cancellationToken).ConfigureAwait(false);
                if (result.Outcome != ReplicaChangeOutcome.Committed)
                {
                    return;
                }

                view.Slots[slot].NeedsRebuild = mode == ReplicaMode.Rebuilding;
                run = new ResyncRun(slot, tracked, mode, System.Diagnostics.Stopwatch.GetTimestamp());
                Volatile.Write(ref _resync, run);
                Volatile.Write(ref _view, view.With(slot, mode, view.Epoch));
            }
            finally
            {
                _changeLock.Release();
            }

            LogResyncStarted(_logger, VolumeName, nodeName, run.Kind, run.RegionsTotal);
            await CopyAndPromoteAsync(run, cancellationToken).ConfigureAwait(false);
            var seconds = System.Diagnostics.Stopwatch.GetElapsedTime(run.Started).TotalSeconds;
            LogResyncDone(_logger, VolumeName, nodeName, run.Kind, run.RegionsDone, run.BytesCopied, seconds, Epoch);
            ClearResyncFailures(nodeId);
        }
        catch (Exception e) when (e is BlockTargetException or SlabException or IOException or OperationCanceledException)
        {
            if (run is not null)
            {
                await AbandonResyncAsync(run, e.Message, stopped: cancellationToken.IsCancellationRequested).ConfigureAwait(false);
            }
            else if (e is not OperationCanceledException)
            {
                RecordResyncFailure(nodeId, nodeName, e.Message);
            }
        }
    }

    /// <summary>
    /// Regions copied at once by one resync: a copy is a chain of round trips (extents, read, write
    /// over the network), so one region at a time leaves the disk and the connection idle between them.
    /// </summary>
    internal const int ConcurrentRegionCopies = 8;

    private async Task CopyAndPromoteAsync(ResyncRun run, CancellationToken cancellationToken)
    {
        while (true)
        {
            await WorkerGroup.RunAsync(ConcurrentRegionCopies, ct => CopyRegionsAsync(run, ct), cancellationToken).ConfigureAwait(false);

            // Nothing left to copy: promote at a write boundary, unless writes marked more meanwhile.
            var pause = await PauseWritesAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (run.Map.Map.DirtyCount > 0)
                {
                    continue;
                }

                await PromoteAsync(run, cancellationToken).ConfigureAwait(false);
                return;
            }
            finally
            {
                await pause.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// One of the resync's copy workers: takes regions no write is touching and copies them until none
    /// is left. A failure cancels the other workers (<see cref="WorkerGroup"/>); a region whose copy
    /// did not finish is marked again.
    /// </summary>
    private async Task CopyRegionsAsync(ResyncRun run, CancellationToken cancellationToken)
    {
        var buffer = AlignedBufferPool.Shared.Rent(run.Map.Map.RegionBytes);
        var extents = new BlockExtent[64];
        long cursor = 0;
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested(); // replicas need not watch the token between requests
                var region = run.TakeNext(ref cursor, out var idle);
                if (region == ResyncRun.Done)
                {
                    return;
                }

                if (region == ResyncRun.Busy)
                {
                    await idle!.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
                    continue;
                }

                try
                {
                    await CopyRegionAsync(run, region, buffer, extents, cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    run.Map.Map.Mark(region * run.Map.Map.RegionBytes, 1);
                    throw;
                }
                finally
                {
                    run.EndCopy(region);
                }

                if (run.TryClaimProgressSave(ProgressSaveInterval))
                {
                    await SaveProgressAsync(run, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>
    /// Copies one region from an in-sync replica to the catching-up one: data extents by value, holes
    /// as zeroes. A source that fails is dropped like on any read (epoch bump) and the region is
    /// copied again from another; a failing target ends the resync.
    /// </summary>
    private async Task CopyRegionAsync(ResyncRun run, long region, AlignedBuffer buffer, BlockExtent[] extents, CancellationToken cancellationToken)
    {
        var start = region * run.Map.Map.RegionBytes;
        while (true)
        {
            var view = Volatile.Read(ref _view);
            if (view.Modes[run.Slot] != run.Mode)
            {
                throw new BlockTargetException(BlockError.IOError, "the replica failed a write during its resync");
            }

            var target = view.Slots[run.Slot].Target;
            var sourceIndex = PickReadReplica(view);
            var source = view.Slots[sourceIndex].Target;
            var end = Math.Min(start + run.Map.Map.RegionBytes, Size);
            var position = start;
            var onSource = true;
            try
            {
                while (position < end)
                {
                    onSource = true;
                    var count = await source.GetExtentsAsync(position, end - position, extents, cancellationToken).ConfigureAwait(false);
                    for (var i = 0; i < count && position < end; i++)
                    {
                        var length = Math.Min(extents[i].Length, end - position);
                        if ((extents[i].Flags & (ExtentFlags.Hole | ExtentFlags.Zero)) != 0)
                        {
                            onSource = false;
                            await target.WriteZeroesAsync(position, length, WriteZeroesFlags.None, cancellationToken).ConfigureAwait(false);
                        }
                        else
                        {
                            var memory = buffer.Memory[..(int)length];
                            if (_copyThrottle is { } throttle)
                            {
                                await throttle.AcquireAsync(length, cancellationToken).ConfigureAwait(false);
                            }

                            onSource = true;
                            await source.ReadAsync(position, memory, cancellationToken).ConfigureAwait(false);
                            onSource = false;
                            await target.WriteAsync(position, memory, BlockWriteFlags.None, cancellationToken).ConfigureAwait(false);
                            Interlocked.Add(ref run.BytesCopied, length);
                        }

                        position += length;
                    }
                }
            }
            catch (BlockTargetException e) when (onSource && TriesAnotherReplica(e.Error))
            {
                await HandleFailuresAsync(view, 1 << sourceIndex, e, cancellationToken).ConfigureAwait(false);
                continue;
            }

            Interlocked.Increment(ref run.RegionsDone);
            return;
        }
    }

    /// <summary>With writes paused and nothing left to copy: makes the copy durable and brings the replica into the in-sync set (epoch bump).</summary>
    private async Task PromoteAsync(ResyncRun run, CancellationToken cancellationToken)
    {
        var slot = Volatile.Read(ref _view).Slots[run.Slot];
        await slot.Target.FlushAsync(cancellationToken).ConfigureAwait(false);
        await _changeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Volatile.Read(ref _view);
            if (current.Modes[run.Slot] != run.Mode)
            {
                throw new BlockTargetException(BlockError.IOError, "the replica failed a write during its resync");
            }

            // Not cancellable: a stop of the resync (a replica leaving the set, whose removal the
            // promotion itself may commit) must not abandon a promotion Raft has taken, or the state
            // would count the replica in sync while this controller no longer writes to it.
            var result = await _authority!.ChangeReplicaAsync(VolumeId, slot.NodeId, ReplicaMode.InSync, current.Epoch, "resynced", CancellationToken.None).ConfigureAwait(false);
            if (result.Outcome == ReplicaChangeOutcome.NotAMember)
            {
                throw new BlockTargetException(BlockError.IOError, "the replica was removed from the volume's replica set");
            }

            if (result.Outcome == ReplicaChangeOutcome.Fenced)
            {
                throw new BlockTargetException(BlockError.Fenced, $"volume '{VolumeName}': epoch {current.Epoch} is no longer the volume's (now {result.Epoch}); another controller owns it");
            }

            foreach (var other in current.Slots)
            {
                other.Target.Epoch = result.Epoch;
            }

            SetMap(run.Slot, null);
            slot.NeedsRebuild = false;
            Volatile.Write(ref _view, current.With(run.Slot, ReplicaMode.InSync, result.Epoch));
            Volatile.Write(ref _resync, null);
        }
        finally
        {
            _changeLock.Release();
        }

        try
        {
            _dirtyMaps?.Delete(VolumeId, slot.MapKey);
        }
        catch (IOException e)
        {
            LogMapNotSaved(_logger, VolumeName, slot.NodeName, e.Message);
        }
    }

    /// <summary>
    /// A resync failed or was stopped: the replica is faulted again (no epoch change: it was not in
    /// sync); its map keeps what is left. A failure is recorded in the cluster state; a stop
    /// (<paramref name="stopped"/>: the set changes, the controller closes) leaves the replica's
    /// state there as it is, for the next resync to resume.
    /// </summary>
    private async Task AbandonResyncAsync(ResyncRun run, string reason, bool stopped)
    {
        var slot = Volatile.Read(ref _view).Slots[run.Slot];
        await _changeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            var current = Volatile.Read(ref _view);
            if (current.Modes[run.Slot] == run.Mode)
            {
                Volatile.Write(ref _view, current.With(run.Slot, ReplicaMode.Faulted, current.Epoch));
            }

            Volatile.Write(ref _resync, null);
            if (!stopped && current.Modes[run.Slot] != ReplicaMode.InSync && _authority is not null)
            {
                try
                {
                    await _authority.ChangeReplicaAsync(VolumeId, slot.NodeId, ReplicaMode.Faulted, current.Epoch, reason, CancellationToken.None).ConfigureAwait(false);
                }
                catch (SlabException)
                {
                    // The cluster state says catching-up until the next resync attempt changes it.
                }
            }
        }
        finally
        {
            _changeLock.Release();
        }

        try
        {
            await SaveProgressAsync(run, CancellationToken.None).ConfigureAwait(false);
        }
        catch (BlockTargetException e)
        {
            // Not flushed: the map on disk stays as last saved (it over-reports what is left: safe).
            reason += $"; its progress was not saved ({e.Message})";
        }

        if (stopped)
        {
            LogCatchUpFailed(_logger, VolumeName, slot.NodeName, "stopped (it resumes at the next resync)");
        }
        else
        {
            RecordResyncFailure(slot.NodeId, slot.NodeName, reason);
        }
    }

    /// <summary>
    /// Makes what the copy wrote durable on the replica, then saves its map, so a resync after a
    /// restart of either side resumes where this one got to. Called by the copier between regions.
    /// </summary>
    private async Task SaveProgressAsync(ResyncRun run, CancellationToken cancellationToken)
    {
        if (_dirtyMaps is null)
        {
            return;
        }

        var slot = Volatile.Read(ref _view).Slots[run.Slot];
        await slot.Target.FlushAsync(cancellationToken).ConfigureAwait(false);
        await run.Map.SaveLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var generation = run.Map.Map.Generation;
            try
            {
                _dirtyMaps.Save(VolumeId, slot.MapKey, EncodeForSave(run.Map));
                run.Map.SavedGeneration = generation;
            }
            catch (IOException e)
            {
                LogMapNotSaved(_logger, VolumeName, slot.NodeName, e.Message);
            }
        }
        finally
        {
            run.Map.SaveLock.Release();
        }
    }

    /// <summary>A faulted replica's map and the generation its last save covered.</summary>
    private sealed class TrackedMap(DirtyRegionMap map)
    {
        public DirtyRegionMap Map { get; } = map;

        public SemaphoreSlim SaveLock { get; } = new(1, 1);

        public long SavedGeneration { get; set; }
    }

    /// <summary>One resync: which regions are left, which are being copied, which have writes in flight.</summary>
    private sealed class ResyncRun(int slot, TrackedMap map, ReplicaMode mode, long started)
    {
        public const long Done = -1;
        public const long Busy = -2;

        private readonly Lock _lock = new();
        private readonly Dictionary<long, int> _writes = [];
        private readonly HashSet<long> _copying = [];
        private TaskCompletionSource? _idle;
        private long _progressSavedAt = System.Diagnostics.Stopwatch.GetTimestamp();

        public long BytesCopied;
        public long RegionsDone;

        public int Slot { get; } = slot;

        public TrackedMap Map { get; } = map;

        /// <summary><see cref="ReplicaMode.CatchingUp"/> (delta) or <see cref="ReplicaMode.Rebuilding"/> (full copy, or a new replica's).</summary>
        public ReplicaMode Mode { get; } = mode;

        public string Kind => Mode == ReplicaMode.Rebuilding ? "rebuild" : "delta";

        /// <summary>When it began (<see cref="System.Diagnostics.Stopwatch"/> timestamp).</summary>
        public long Started { get; } = started;

        /// <summary>The regions being copied now (taken from the map but not yet written).</summary>
        public long[] CopyingRegions
        {
            get
            {
                lock (_lock)
                {
                    return [.. _copying];
                }
            }
        }

        /// <summary>True for the one worker that should make progress durable now (every <paramref name="interval"/>).</summary>
        public bool TryClaimProgressSave(TimeSpan interval)
        {
            lock (_lock)
            {
                if (System.Diagnostics.Stopwatch.GetElapsedTime(_progressSavedAt) < interval)
                {
                    return false;
                }

                _progressSavedAt = System.Diagnostics.Stopwatch.GetTimestamp();
                return true;
            }
        }

        public long RegionsTotal { get; } = map.Map.DirtyCount;

        /// <summary>Registers a write of [offset, +length); true when it may go to the catching-up replica (every region it touches is copied already).</summary>
        public bool Enter(long offset, long length)
        {
            var (first, last) = Regions(offset, length);
            lock (_lock)
            {
                var send = true;
                for (var region = first; region <= last; region++)
                {
                    _writes[region] = _writes.GetValueOrDefault(region) + 1;
                    send &= !_copying.Contains(region) && !Map.Map.IsSet(region);
                }

                return send;
            }
        }

        public void Exit(long offset, long length)
        {
            var (first, last) = Regions(offset, length);
            lock (_lock)
            {
                for (var region = first; region <= last; region++)
                {
                    if (_writes[region] == 1)
                    {
                        _writes.Remove(region);
                    }
                    else
                    {
                        _writes[region]--;
                    }
                }

                _idle?.TrySetResult();
                _idle = null;
            }
        }

        /// <summary>
        /// Takes the next region to copy that no write is touching and no other worker is copying;
        /// <see cref="Done"/> when none is left, <see cref="Busy"/> (with a task to wait for) when all
        /// left are being written or copied.
        /// </summary>
        public long TakeNext(ref long cursor, out TaskCompletionSource? idle)
        {
            idle = null;
            lock (_lock)
            {
                var first = Map.Map.NextSet(cursor);
                if (first < 0)
                {
                    return Done;
                }

                var region = first;
                do
                {
                    // A region another worker still copies was marked again by a write meanwhile: its
                    // copy may be older than that write, so it is taken only after that copy ends.
                    if (!_writes.ContainsKey(region) && !_copying.Contains(region) && Map.Map.TryTake(region))
                    {
                        _copying.Add(region);
                        cursor = region + 1 < Map.Map.RegionCount ? region + 1 : 0;
                        return region;
                    }

                    region = Map.Map.NextSet(region + 1 < Map.Map.RegionCount ? region + 1 : 0);
                }
                while (region >= 0 && region != first);

                _idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                idle = _idle;
                return Busy;
            }
        }

        public void EndCopy(long region)
        {
            lock (_lock)
            {
                _copying.Remove(region);
                _idle?.TrySetResult(); // a worker may wait for this region
                _idle = null;
            }
        }

        private (long First, long Last) Regions(long offset, long length)
        {
            var size = Map.Map.RegionBytes;
            return (offset / size, Math.Min((offset + Math.Max(length, 1) - 1) / size, Map.Map.RegionCount - 1));
        }
    }

    /// <summary>How often a running resync makes its progress durable (replica flushed, map saved), so a restart resumes it.</summary>
    private static readonly TimeSpan ProgressSaveInterval = TimeSpan.FromSeconds(2);

    [LoggerMessage(EventId = 43, Level = LogLevel.Information, Message = "volume {Volume}: resync of replica on {Node} started ({Kind}, {Regions} regions)")]
    private static partial void LogResyncStarted(ILogger logger, string volume, string node, string kind, long regions);

    [LoggerMessage(EventId = 44, Level = LogLevel.Information, Message = "volume {Volume}: resync of replica on {Node} done ({Kind}): {Regions} regions, {Bytes} bytes copied in {Seconds:0.0} s; in sync at epoch {Epoch}")]
    private static partial void LogResyncDone(ILogger logger, string volume, string node, string kind, long regions, long bytes, double seconds, long epoch);

    [LoggerMessage(EventId = 45, Level = LogLevel.Warning, Message = "volume {Volume}: the dirty-region map of the replica on {Node} could not be saved or removed ({Reason}); a resync after a crash copies everything")]
    private static partial void LogMapNotSaved(ILogger logger, string volume, string node, string reason);
}
