using System.Collections.Immutable;
using Slab.Common;

namespace Slab.Cluster.State;

// Snapshots, clones and restores of cluster volumes. A snapshot is recorded pending, its in-sync
// replicas reflinked at one write boundary, then committed with the replicas that hold it. A clone
// is a CreateVolume whose origin is a committed snapshot. A restore runs under a restore attachment
// and ends with FinishRestore.
public static partial class ClusterStateTransitions
{
    /// <summary>Snapshots one volume may have (pending ones included).</summary>
    public const int MaxSnapshotsPerVolume = 1024;

    private static ApplyOutcome CreateSnapshot(ClusterState state, CreateSnapshot c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (string.IsNullOrEmpty(c.SnapshotId))
        {
            return Reject(state, Rejection.InvalidArgument, "snapshot id is empty");
        }

        if (!VolumeNames.IsValid(c.Name))
        {
            return Reject(state, Rejection.InvalidArgument, VolumeNames.Invalid(c.Name, "snapshot"));
        }

        foreach (var existing in volume.Snapshots)
        {
            if (existing.Name == c.Name || existing.Id == c.SnapshotId)
            {
                return Reject(state, Rejection.AlreadyExists,
                    $"volume '{volume.Name}' already has snapshot '{existing.Name}' (id {existing.Id}); choose another name");
            }
        }

        if (volume.Snapshots.Length >= MaxSnapshotsPerVolume)
        {
            return Reject(state, Rejection.InvalidArgument,
                $"volume '{volume.Name}' has {volume.Snapshots.Length} snapshots, the most allowed; delete some first");
        }

        var snapshot = new SnapshotInfo { Id = c.SnapshotId, Name = c.Name, SizeBytes = volume.Spec.SizeBytes, Created = c.Timestamp, Pending = true };
        volume = volume with { Snapshots = volume.Snapshots.Add(snapshot) };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume, snapshot.Id));
    }

    private static ApplyOutcome CommitSnapshot(ClusterState state, CommitSnapshot c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.FindSnapshotById(c.SnapshotId) is not { } snapshot)
        {
            return Reject(state, Rejection.SnapshotNotFound, $"volume '{volume.Name}' has no snapshot with id {c.SnapshotId} (deleted meanwhile?)");
        }
        if (!snapshot.Pending)
        {
            return Ok(state, CommandResult.Ok(volume, snapshot.Id)); // committed already: a retry
        }

        if (CheckEpoch(volume, c.ExpectedEpoch) is { } stale)
        {
            return new ApplyOutcome(state, stale with
            {
                Message = $"volume '{volume.Name}' changed while snapshot '{snapshot.Name}' was taken (epoch {c.ExpectedEpoch} → {volume.Epoch}: a replica left the in-sync set or the volume was attached); take it again",
            });
        }

        if (c.Holders.IsDefaultOrEmpty)
        {
            return Reject(state, Rejection.InvalidArgument, "a snapshot needs at least one replica holding it");
        }

        var holders = ImmutableArray.CreateBuilder<SnapshotHolder>(c.Holders.Length);
        foreach (var nodeId in c.Holders)
        {
            if (volume.FindReplica(nodeId) is not { State: ReplicaState.InSync } replica)
            {
                return Reject(state, Rejection.ReplicaNotFound, $"volume '{volume.Name}' has no in-sync replica on node {nodeId} to hold snapshot '{snapshot.Name}'");
            }

            holders.Add(new SnapshotHolder(replica.NodeId, replica.Incarnation));
        }

        volume = volume with { Snapshots = volume.Snapshots.Replace(snapshot, snapshot with { Pending = false, Holders = holders.ToImmutable() }) };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume, snapshot.Id));
    }

    private static ApplyOutcome AddSnapshotHolder(ClusterState state, AddSnapshotHolder c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.FindSnapshotById(c.SnapshotId) is not { } snapshot)
        {
            return Reject(state, Rejection.SnapshotNotFound, $"volume '{volume.Name}' has no snapshot with id {c.SnapshotId} (deleted meanwhile?)");
        }

        if (snapshot.Pending)
        {
            return Reject(state, Rejection.InvalidArgument, $"snapshot '{volume.Name}@{snapshot.Name}' is still being taken; it cannot be copied yet");
        }

        if (volume.FindReplica(c.NodeId) is not { } replica || replica.Incarnation != c.Incarnation)
        {
            return Reject(state, Rejection.ReplicaNotFound,
                $"volume '{volume.Name}' has no replica on node {c.NodeId} of incarnation {c.Incarnation} (replaced or removed meanwhile) to hold snapshot '{snapshot.Name}'");
        }

        var holder = new SnapshotHolder(replica.NodeId, replica.Incarnation);
        if (snapshot.Holders.Contains(holder))
        {
            return Ok(state, CommandResult.Ok(volume, snapshot.Id)); // recorded already: a retry
        }

        // An entry of the node's earlier replica (another incarnation) held a copy that went with it.
        var holders = snapshot.Holders.RemoveAll(h => h.NodeId == replica.NodeId).Add(holder);
        volume = volume with { Snapshots = volume.Snapshots.Replace(snapshot, snapshot with { Holders = holders }) };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume, snapshot.Id));
    }

    private static ApplyOutcome DeleteSnapshot(ClusterState state, DeleteSnapshot c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.FindSnapshot(c.Snapshot) is not { } snapshot)
        {
            return Reject(state, Rejection.SnapshotNotFound, $"volume '{volume.Name}' has no snapshot '{c.Snapshot}'");
        }

        if (volume.Attachment is { Purpose: AttachPurpose.Restore } restore && restore.RestoreSnapshotId == snapshot.Id)
        {
            return Reject(state, Rejection.VolumeAttached, $"volume '{volume.Name}' is being restored from snapshot '{snapshot.Name}'; delete it after the restore");
        }

        volume = volume with { Snapshots = volume.Snapshots.Remove(snapshot) };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume, snapshot.Id));
    }

    private static ApplyOutcome FinishRestore(ClusterState state, FinishRestore c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.Attachment is not { Purpose: AttachPurpose.Restore } restore || restore.NodeId != c.NodeId)
        {
            return Reject(state, Rejection.NotAttachedHere, $"volume '{volume.Name}' is not being restored by node {c.NodeId} (taken over meanwhile?)");
        }

        var restored = c.Restored.IsDefault ? [] : c.Restored;
        foreach (var nodeId in restored)
        {
            if (volume.FindReplica(nodeId) is null)
            {
                return Reject(state, Rejection.ReplicaNotFound, $"volume '{volume.Name}' has no replica on node {nodeId}");
            }
        }

        if (restored.IsEmpty)
        {
            // Abandoned before any replica changed: the volume is as it was.
            volume = volume with { Attachment = null };
            return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
        }

        var replicas = volume.Replicas.Select(r => restored.Contains(r.NodeId)
            ? (r.State == ReplicaState.InSync ? r : r with { State = ReplicaState.InSync, StateSince = c.Timestamp })
            : (r.State == ReplicaState.Rebuilding ? r : r with { State = ReplicaState.Rebuilding, StateSince = c.Timestamp }));
        volume = volume with { Attachment = null, Replicas = [.. replicas], Epoch = volume.Epoch + 1 };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    /// <summary>
    /// A restore attachment taken over from a dead node: the restore source's replica (in sync when
    /// it began; restored or not, each replica file is replaced whole) stays in sync, every other
    /// replica is rebuilt from it, so no two replicas can differ.
    /// </summary>
    private static ImmutableArray<ReplicaInfo> AfterInterruptedRestore(VolumeInfo volume, AttachmentInfo restore, DateTimeOffset timestamp)
        => [.. volume.Replicas.Select(r => r.NodeId == restore.RestoreSource
            ? r with { State = ReplicaState.InSync }
            : r.State == ReplicaState.Rebuilding ? r : r with { State = ReplicaState.Rebuilding, StateSince = timestamp })];

    /// <summary>A restore may begin: the snapshot is committed, its source an in-sync holder, the volume not attached on a host.</summary>
    private static CommandResult? ValidateRestore(ClusterState state, VolumeInfo volume, AttachVolume c)
    {
        if (volume.Attachment is { Purpose: AttachPurpose.Host } host)
        {
            var where = state.Nodes.TryGetValue(host.NodeId, out var node) ? node.Name : host.NodeId;
            return CommandResult.Reject(Rejection.VolumeAttached,
                $"volume '{volume.Name}' is attached on {where}; detach it before restoring (if {where} is dead, attach it on another node, which takes it over, and detach it there)");
        }

        if (volume.FindSnapshotById(c.RestoreSnapshotId) is not { Pending: false } snapshot)
        {
            return CommandResult.Reject(Rejection.SnapshotNotFound, $"volume '{volume.Name}' has no committed snapshot with id '{c.RestoreSnapshotId}'");
        }

        if (!snapshot.HoldingReplicas(volume).Any(r => r.NodeId == c.RestoreSource && r.State == ReplicaState.InSync))
        {
            return CommandResult.Reject(Rejection.ReplicaNotFound,
                $"the replica on node {c.RestoreSource} is not an in-sync replica holding snapshot '{snapshot.Name}' of volume '{volume.Name}'");
        }

        return null;
    }

    /// <summary>A clone's origin is a committed snapshot, its size fits, and its in-sync replicas hold the snapshot.</summary>
    private static CommandResult? ValidateOrigin(ClusterState state, CreateVolume c, VolumeOrigin origin)
    {
        if (!state.Volumes.TryGetValue(origin.VolumeId, out var source))
        {
            return CommandResult.Reject(Rejection.VolumeNotFound, $"the clone's source volume {origin.VolumeId} no longer exists");
        }

        if (source.FindSnapshotById(origin.SnapshotId) is not { Pending: false } snapshot)
        {
            return CommandResult.Reject(Rejection.SnapshotNotFound, $"volume '{source.Name}' has no committed snapshot with id {origin.SnapshotId} to clone");
        }

        if (c.Spec.SizeBytes < snapshot.SizeBytes)
        {
            return CommandResult.Reject(Rejection.InvalidArgument, $"a clone of '{source.Name}@{snapshot.Name}' must be at least {snapshot.SizeBytes} bytes");
        }

        var holders = snapshot.HoldingReplicas(source).Select(r => r.NodeId).ToHashSet(StringComparer.Ordinal);
        var inSync = c.Replicas.IsDefault ? [] : c.Replicas.Where(r => r.State == ReplicaState.InSync).ToList();
        if (inSync.Count == 0 && !c.Replicas.IsDefaultOrEmpty)
        {
            return CommandResult.Reject(Rejection.PlacementViolation, $"a clone of '{source.Name}@{snapshot.Name}' needs an in-sync replica on a node that holds the snapshot");
        }

        foreach (var replica in inSync)
        {
            if (!holders.Contains(replica.NodeId))
            {
                return CommandResult.Reject(Rejection.PlacementViolation,
                    $"node {replica.NodeId} holds no copy of snapshot '{source.Name}@{snapshot.Name}'; a replica there must start rebuilding");
            }
        }

        return null;
    }
}
