using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Buffers;
using Slab.Common;

namespace Slab.Volumes;

// Replicas joining and leaving an open controller (ha-update), and the replica check. A replica
// joins out of sync and is brought in by the controller's next resync (a rebuild: a full copy of the
// allocated extents, resumed from its saved map when one exists). A replica leaves with writes
// paused and any resync stopped, because slot positions (fan-out masks, maps) shift.
public sealed partial class VolumeController
{
    /// <summary>
    /// Adds <paramref name="member"/> (not in sync: <see cref="ReplicaMode.Rebuilding"/> or
    /// <see cref="ReplicaMode.Faulted"/>) to the set at the controller's epoch. It receives nothing
    /// until a resync (<see cref="TryStartResync"/>) copies it. False when its node already holds a
    /// replica in the set or the set is full; the caller then still owns the target.
    /// </summary>
    public async Task<bool> AddReplicaAsync(ReplicaMember member, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(member);
        if (member.Mode == ReplicaMode.InSync)
        {
            throw new ArgumentException("a replica joins out of sync; its rebuild brings it in", nameof(member));
        }

        await _changeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var view = Volatile.Read(ref _view);
            if (Array.Exists(view.Slots, s => s.NodeId == member.NodeId) || view.Slots.Length == ReplicaSetView.MaxMembers)
            {
                return false;
            }

            member.Target.Epoch = view.Epoch;
            member.Target.Grow(Size);
            var slot = new ReplicaSlot(member.NodeId, member.NodeName, member.Target, member.IsLocal, member.Incarnation, needsRebuild: member.Mode == ReplicaMode.Rebuilding);
            Volatile.Write(ref _view, new ReplicaSetView(view.Epoch, [.. view.Slots, slot], [.. view.Modes, ReplicaMode.Faulted]));

            // A rebuild of this incarnation interrupted earlier (a restart) resumes from its saved map.
            if (_dirtyMaps?.Load(VolumeId, slot.MapKey, Size) is { } saved)
            {
                SetMap(view.Slots.Length, new TrackedMap(saved) { SavedGeneration = saved.Generation });
            }

            LogReplicaAdded(_logger, VolumeName, member.NodeName);
            return true;
        }
        finally
        {
            _changeLock.Release();
        }
    }

    /// <summary>
    /// Stops using the replica on <paramref name="nodeId"/> (removed from the volume's set): a
    /// resync under way stops (to resume after), writes pause while the set changes, the target is
    /// disposed and its map deleted. False when the set has no replica there.
    /// </summary>
    /// <exception cref="SlabException">FailedPrecondition: it is the last in-sync replica of this controller.</exception>
    public async Task<bool> RemoveReplicaAsync(string nodeId, CancellationToken cancellationToken)
    {
        ReplicaSlot removed;
        while (true)
        {
            await StopResyncAsync().ConfigureAwait(false);
            var pause = await PauseWritesAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _changeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    if (Volatile.Read(ref _resync) is not null)
                    {
                        continue; // a resync started meanwhile: stop it too
                    }

                    var view = Volatile.Read(ref _view);
                    var index = Array.FindIndex(view.Slots, s => s.NodeId == nodeId);
                    if (index < 0)
                    {
                        return false;
                    }

                    if (view.Modes[index] == ReplicaMode.InSync && view.InSyncCount == 1)
                    {
                        throw new SlabException(
                            SlabErrorCode.FailedPrecondition,
                            $"volume '{VolumeName}': the replica on {view.Slots[index].NodeName} is the last in-sync replica of the open volume; it cannot be removed");
                    }

                    removed = view.Slots[index];
                    var maps = Volatile.Read(ref _maps);
                    var keptMaps = new List<TrackedMap?>(view.Slots.Length - 1);
                    for (var i = 0; i < view.Slots.Length; i++)
                    {
                        if (i != index)
                        {
                            keptMaps.Add(maps.Length > i ? maps[i] : null);
                        }
                    }

                    Volatile.Write(ref _view, new ReplicaSetView(view.Epoch, [.. view.Slots.Where((_, i) => i != index)], [.. view.Modes.Where((_, i) => i != index)]));
                    Volatile.Write(ref _maps, keptMaps.TrueForAll(m => m is null) ? [] : [.. keptMaps]);
                    break;
                }
                finally
                {
                    _changeLock.Release();
                }
            }
            finally
            {
                await pause.DisposeAsync().ConfigureAwait(false);
            }
        }

        removed.Target.Dispose();
        try
        {
            _dirtyMaps?.Delete(VolumeId, removed.MapKey);
        }
        catch (IOException e)
        {
            LogMapNotSaved(_logger, VolumeName, removed.NodeName, e.Message);
        }

        LogReplicaRemoved(_logger, VolumeName, removed.NodeName);
        return true;
    }

    /// <summary>
    /// Compares the in-sync replicas region by region (<see cref="DirtyRegionMap.DefaultRegionBytes"/>
    /// each; regions that are holes on every replica without reading them). A region that differs is
    /// compared again with writes paused, so a write in flight is not reported; what still differs is.
    /// Reads only; writes go on (paused briefly for a second look).
    /// </summary>
    /// <exception cref="BlockTargetException">A replica could not be read.</exception>
    public async Task<ReplicaCheckReport> CheckAsync(CancellationToken cancellationToken)
    {
        const int regionBytes = DirtyRegionMap.DefaultRegionBytes;
        var names = Replicas.Where(r => r.Mode == ReplicaMode.InSync).Select(r => r.NodeName).ToArray();
        var buffers = new AlignedBuffer[ReplicaSetView.MaxMembers];
        for (var i = 0; i < buffers.Length; i++)
        {
            buffers[i] = AlignedBufferPool.Shared.Rent(regionBytes);
        }

        var extents = new BlockExtent[64];
        var differing = new List<long>();
        long differingCount = 0;
        long compared = 0;
        try
        {
            for (long offset = 0; offset < Size; offset += regionBytes)
            {
                var length = (int)Math.Min(regionBytes, Size - offset);
                if (!await RegionMatchesAsync(offset, length, buffers, extents, cancellationToken).ConfigureAwait(false))
                {
                    var pause = await PauseWritesAsync(cancellationToken).ConfigureAwait(false);
                    try
                    {
                        if (!await RegionMatchesAsync(offset, length, buffers, extents, cancellationToken).ConfigureAwait(false))
                        {
                            if (++differingCount <= 1000)
                            {
                                differing.Add(offset);
                            }
                        }
                    }
                    finally
                    {
                        await pause.DisposeAsync().ConfigureAwait(false);
                    }
                }

                compared += length;
            }
        }
        finally
        {
            foreach (var buffer in buffers)
            {
                buffer.Return();
            }
        }

        return new ReplicaCheckReport(names, compared, differing, differingCount);
    }

    /// <summary>True when every in-sync replica holds the same bytes in [offset, +length).</summary>
    private async Task<bool> RegionMatchesAsync(long offset, int length, AlignedBuffer[] buffers, BlockExtent[] extents, CancellationToken cancellationToken)
    {
        var view = Volatile.Read(ref _view);
        if (view.InSyncCount < 2)
        {
            return true;
        }

        var allZero = true;
        for (var i = 0; i < view.Slots.Length && allZero; i++)
        {
            if (view.Modes[i] == ReplicaMode.InSync)
            {
                allZero = await IsAllZeroAsync(view.Slots[i].Target, offset, length, extents, cancellationToken).ConfigureAwait(false);
            }
        }

        if (allZero)
        {
            return true;
        }

        var first = -1;
        for (var i = 0; i < view.Slots.Length; i++)
        {
            if (view.Modes[i] != ReplicaMode.InSync)
            {
                continue;
            }

            var memory = buffers[i].Memory[..length];
            await view.Slots[i].Target.ReadAsync(offset, memory, cancellationToken).ConfigureAwait(false);
            if (first < 0)
            {
                first = i;
            }
            else if (!memory.Span.SequenceEqual(buffers[first].Memory.Span[..length]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>True when the target reports [offset, +length) as holes or zeroes throughout.</summary>
    private static async Task<bool> IsAllZeroAsync(IBlockTarget target, long offset, long length, BlockExtent[] extents, CancellationToken cancellationToken)
    {
        var position = offset;
        var end = offset + length;
        while (position < end)
        {
            var count = await target.GetExtentsAsync(position, end - position, extents, cancellationToken).ConfigureAwait(false);
            if (count == 0)
            {
                return false;
            }

            for (var i = 0; i < count && position < end; i++)
            {
                if ((extents[i].Flags & (ExtentFlags.Hole | ExtentFlags.Zero)) == 0)
                {
                    return false;
                }

                position += extents[i].Length;
            }
        }

        return true;
    }

    [LoggerMessage(EventId = 46, Level = LogLevel.Information, Message = "volume {Volume}: replica on {Node} joined the set; it is rebuilt before it counts")]
    private static partial void LogReplicaAdded(ILogger logger, string volume, string node);

    [LoggerMessage(EventId = 47, Level = LogLevel.Information, Message = "volume {Volume}: replica on {Node} left the set")]
    private static partial void LogReplicaRemoved(ILogger logger, string volume, string node);
}
