using Slab.Block;
using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

/// <summary>The moment a cluster snapshot is cut: the controller's epoch and the replicas in sync at it (writes held, all flushed).</summary>
/// <param name="Epoch">The epoch the controller's requests carry; every replica's reflink is admitted at it.</param>
/// <param name="InSyncNodeIds">The nodes of the replicas that have every acknowledged write.</param>
public sealed record WriteBoundary(long Epoch, IReadOnlyList<string> InSyncNodeIds);

// The volume layer's part of cluster snapshots and restores: the controller side (hold writes at a
// boundary) and the replica side (reflink or restore this node's replica under its epoch gate).
// The cluster layer orchestrates them across nodes.
public sealed partial class VolumeManager
{
    /// <summary>
    /// Holds the writes of the volume's controller open on this node at a write boundary, flushes
    /// every replica it writes to, and runs <paramref name="cut"/> (which reflinks the in-sync
    /// replicas) before writes resume. Every write acknowledged before the
    /// call is in the cut; none after it is.
    /// </summary>
    /// <exception cref="SlabException">No controller open here (FailedPrecondition); a replica failed the flush and could not be dropped (Unavailable).</exception>
    public async Task<T> AtWriteBoundaryAsync<T>(string volumeId, Func<WriteBoundary, CancellationToken, Task<T>> cut, CancellationToken cancellationToken)
    {
        var controller = OpenController(volumeId)
            ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume {volumeId} has no controller on this node (detached meanwhile?); try again");
        await using var pause = (await controller.PauseWritesAsync(cancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
        try
        {
            await controller.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (BlockTargetException e)
        {
            throw new SlabException(SlabErrorCode.Unavailable, $"volume '{controller.VolumeName}' could not be flushed for the snapshot: {e.Message}", e);
        }

        var inSync = controller.Replicas.Where(r => r.Mode == ReplicaMode.InSync).Select(r => r.NodeId).ToList();
        return await cut(new WriteBoundary(controller.Epoch, inSync), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Replica side of a cluster snapshot: reflinks this node's replica of <paramref name="volumeId"/>
    /// into <paramref name="snapshot"/>, admitted by the replica's epoch gate at
    /// <paramref name="epoch"/> (an epoch raise waits for it, a fenced controller cannot take it).
    /// A snapshot with that id taken already is a retry.
    /// </summary>
    /// <exception cref="SlabException">No replica here (NotFound); the replica holds a newer epoch (FailedPrecondition); the reflink failed.</exception>
    public async Task SnapshotLocalReplicaAsync(string volumeId, SnapshotRecord snapshot, long epoch, CancellationToken cancellationToken)
    {
        var record = RequireLocalReplica(volumeId);
        if (record.FindSnapshotById(snapshot.Id) is not null)
        {
            return;
        }

        using var lease = OpenLocalReplica(record);
        var (admission, current) = await lease.Replica.Gate.EnterAsync(epoch, lease.Replica, static (replica, e, ct) => replica.TryAdvanceAsync(e, ct), cancellationToken)
            .ConfigureAwait(false);
        if (admission != EpochAdmission.Admitted)
        {
            throw new SlabException(
                SlabErrorCode.FailedPrecondition,
                $"the replica of volume '{record.Name}' here is at epoch {current}, the snapshot was cut at epoch {epoch}: the volume changed hands meanwhile; take the snapshot again");
        }

        try
        {
            await lease.Replica.File.FlushAsync(cancellationToken).ConfigureAwait(false);
            await _store.CreateSnapshotAsync(record, snapshot, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lease.Replica.Gate.Exit();
        }
    }

    /// <summary>
    /// Replica side of a cluster restore: raises the replica's epoch to <paramref name="epoch"/> (older
    /// controllers' requests drained and refused from now), then replaces its data by its copy of the
    /// snapshot, whole (atomically). The replica must not be open here (the caller closed the replica
    /// server's handle; no controller runs here).
    /// </summary>
    /// <exception cref="SlabException">No replica or no copy of the snapshot here (NotFound); the replica is open or holds a newer epoch (FailedPrecondition).</exception>
    public async Task RestoreLocalReplicaAsync(string volumeId, string snapshotId, long epoch, CancellationToken cancellationToken)
    {
        var record = RequireLocalReplica(volumeId);
        if (record.FindSnapshotById(snapshotId) is not { } snapshot)
        {
            throw new SlabException(SlabErrorCode.NotFound, $"the replica of volume '{record.Name}' here holds no copy of snapshot {snapshotId}");
        }

        await FenceReplicaAsync(volumeId, epoch, cancellationToken).ConfigureAwait(false);
        record = RequireLocalReplica(volumeId);
        if (record.Epoch > epoch)
        {
            throw new SlabException(
                SlabErrorCode.FailedPrecondition,
                $"the replica of volume '{record.Name}' here is at epoch {record.Epoch}, the restore runs at epoch {epoch}: the volume was taken over meanwhile");
        }

        await using (TakeExclusive(record, "restore").ConfigureAwait(false))
        {
            await _store.RestoreSnapshotAsync(record, snapshot, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Deletes this node's copies <paramref name="snapshotIds"/> of the replica's snapshots (deleted in the cluster, or never committed). Returns how many were there.</summary>
    public async Task<int> DropSnapshotsAsync(string volumeId, IReadOnlyCollection<string> snapshotIds, CancellationToken cancellationToken)
    {
        if (_store.FindVolume(volumeId) is not { } record)
        {
            return 0;
        }

        var dropped = 0;
        foreach (var snapshot in record.Snapshots.Where(s => snapshotIds.Contains(s.Id)).ToList())
        {
            record = await _store.DeleteSnapshotAsync(record, snapshot, cancellationToken).ConfigureAwait(false);
            dropped++;
        }

        return dropped;
    }

    private VolumeRecord RequireLocalReplica(string volumeId)
        => _store.FindVolume(volumeId) ?? throw new SlabException(SlabErrorCode.NotFound, $"this node holds no replica of volume {volumeId}");
}
