using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Common;

namespace Slab.Volumes;

public sealed partial class VolumeController
{
    /// <summary>
    /// Deals with the replicas (bit i = slot i of <paramref name="seen"/>) that failed an operation
    /// sent under <paramref name="seen"/>: drops failed in-sync replicas (raising the epoch) and
    /// failed catching-up ones. Returns true when the operation must be sent again (the epoch moved
    /// under it), false when it stands as acknowledged by every in-sync replica left; throws when it
    /// must fail.
    /// </summary>
    private async ValueTask<bool> HandleFailuresAsync(ReplicaSetView seen, int failed, BlockTargetException failure, CancellationToken cancellationToken)
    {
        if (failure.Error == BlockError.Fenced)
        {
            // Our own drop of a replica may have raised the epoch while the request was on its way.
            await _changeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            _changeLock.Release();
            if (Volatile.Read(ref _view).Epoch > seen.Epoch)
            {
                return true;
            }

            LogFenced(_logger, VolumeName, seen.Epoch, failure.Message);
            throw failure;
        }

        if (!FaultsReplica(failure.Error))
        {
            throw failure; // a bad request fails on every replica alike
        }

        for (var i = 0; i < seen.Slots.Length; i++)
        {
            if ((failed & (1 << i)) != 0 && seen.Modes[i] != ReplicaMode.Faulted)
            {
                await DropAsync(seen.Slots[i], failure, cancellationToken).ConfigureAwait(false);
            }
        }

        return false;
    }

    /// <summary>Takes <paramref name="slot"/> out of the set (in sync: through the authority, raising the epoch).</summary>
    private async ValueTask DropAsync(ReplicaSlot slot, BlockTargetException cause, CancellationToken cancellationToken)
    {
        await _changeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Volatile.Read(ref _view);
            var index = Array.IndexOf(current.Slots, slot); // slots are shared by views; a removed one is not found
            if (index < 0)
            {
                return; // removed from the set meanwhile
            }

            switch (current.Modes[index])
            {
                case ReplicaMode.Faulted:
                    return; // another request dropped it already
                case ReplicaMode.CatchingUp or ReplicaMode.Rebuilding:
                    // Not counted for acknowledgement: the resync stops, the replica stays out.
                    Volatile.Write(ref _view, current.With(index, ReplicaMode.Faulted, current.Epoch));
                    LogCatchUpFailed(_logger, VolumeName, slot.NodeName, cause.Message); // the copier sees the mode and stops
                    return;
            }

            if (_authority is null || current.InSyncCount == 1)
            {
                throw new BlockTargetException(
                    cause.Error,
                    current.Slots.Length == 1
                        ? cause.Message
                        : $"volume '{VolumeName}': replica on {slot.NodeName} failed and it is the last in-sync replica, so the request is not acknowledged: {cause.Message}",
                    cause);
            }

            ReplicaChangeResult result;
            try
            {
                result = await _authority.ChangeReplicaAsync(VolumeId, slot.NodeId, ReplicaMode.Faulted, current.Epoch, cause.Message, cancellationToken).ConfigureAwait(false);
            }
            catch (SlabException e)
            {
                throw new BlockTargetException(
                    BlockError.IOError,
                    $"volume '{VolumeName}': replica on {slot.NodeName} failed ({cause.Message}) and could not be taken out of the in-sync set ({e.Message}); the request is not acknowledged",
                    e);
            }

            if (result.Outcome == ReplicaChangeOutcome.NotAMember)
            {
                // ha-update removed it; the set follows shortly. It is no longer counted.
                Volatile.Write(ref _view, current.With(index, ReplicaMode.Faulted, current.Epoch));
                LogReplicaDropped(_logger, VolumeName, slot.NodeName, current.Epoch, current.Epoch, "it was removed from the volume's replica set");
                return;
            }

            if (result.Outcome == ReplicaChangeOutcome.Fenced)
            {
                LogFenced(_logger, VolumeName, current.Epoch, $"the volume is at epoch {result.Epoch}");
                throw new BlockTargetException(
                    BlockError.Fenced,
                    $"volume '{VolumeName}': epoch {current.Epoch} is no longer the volume's (now {result.Epoch}); another controller owns it");
            }

            foreach (var other in current.Slots)
            {
                other.Target.Epoch = result.Epoch;
            }

            Volatile.Write(ref _view, current.With(index, ReplicaMode.Faulted, result.Epoch));
            LogReplicaDropped(_logger, VolumeName, slot.NodeName, current.Epoch, result.Epoch, cause.Message);
            OnReplicaDropped(slot.NodeId);
        }
        finally
        {
            _changeLock.Release();
        }
    }

    /// <summary>Hook for dirty tracking and resync: an in-sync replica was dropped (called under the change lock).</summary>
    partial void OnReplicaDropped(string nodeId);

    [LoggerMessage(EventId = 40, Level = LogLevel.Warning, Message = "volume {Volume}: replica on {Node} dropped from the in-sync set, epoch {OldEpoch} -> {NewEpoch}: {Reason}")]
    private static partial void LogReplicaDropped(ILogger logger, string volume, string node, long oldEpoch, long newEpoch, string reason);

    [LoggerMessage(EventId = 41, Level = LogLevel.Warning, Message = "volume {Volume}: resync of replica on {Node} stopped: {Reason}")]
    private static partial void LogCatchUpFailed(ILogger logger, string volume, string node, string reason);

    [LoggerMessage(EventId = 48, Level = LogLevel.Debug, Message = "volume {Volume}: resync of replica on {Node} failed again ({Count} in a row; next try in {Seconds} s): {Reason}")]
    private static partial void LogCatchUpFailedAgain(ILogger logger, string volume, string node, int count, double seconds, string reason);

    [LoggerMessage(EventId = 42, Level = LogLevel.Error, Message = "volume {Volume}: this controller (epoch {Epoch}) is fenced, another controller owns the volume: {Reason}")]
    private static partial void LogFenced(ILogger logger, string volume, long epoch, string reason);
}
