using Slab.Cluster.State;
using Slab.Common;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

// Restore of a detached cluster volume from one of its snapshots. Under a restore attachment on this
// node (host attaches are refused meanwhile; its epoch fences older controllers), the replicas that
// hold the snapshot are restored, an in-sync one first (the restore source); FinishRestore then marks
// them in sync and every other replica rebuilding (copied from them). Each replica file is replaced
// whole, and a restore interrupted by a crash ends with the source's replica as the one truth (see
// AttachPurpose.Restore), so replicas never differ.
public sealed partial class ClusterVolumeOperations
{
    /// <summary>Replaces a detached volume's data by a snapshot's on every replica (restored or rebuilt).</summary>
    /// <exception cref="SlabException">Unknown volume or snapshot; attached; no in-sync replica holding the snapshot is online; the source replica could not be restored (nothing changed).</exception>
    public async Task<VolumeInfo> RestoreAsync(string volumeReference, string snapshotReference, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        var snapshot = RequireSnapshot(volume, snapshotReference);
        switch (volume.Attachment)
        {
            case { Purpose: AttachPurpose.Host } host:
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is attached on {NameOf(host.NodeId)}; detach it before restoring");
            case { } busy:
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is {Describe(busy)} by {NameOf(busy.NodeId)}; restore it when that ends ('slabctl volume inspect {volume.Name}' shows progress)");
        }

        var holders = snapshot.HoldingReplicas(volume).Where(r => runtime.IsAlive(r.NodeId)).ToList();
        var source = holders.FirstOrDefault(r => r.State == ReplicaState.InSync)
            ?? throw new SlabException(
                SlabErrorCode.Unavailable,
                $"no in-sync replica holding snapshot '{volume.Name}@{snapshot.Name}' is on an online node (held on {string.Join(", ", snapshot.Holders.Select(h => NameOf(h.NodeId)))}); bring one back, then restore");

        using var marked = runtime.BeginAttach(volume.Id);
        var attached = await runtime.ProposeOrThrowAsync(
            new AttachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId, Purpose = AttachPurpose.Restore, RestoreSnapshotId = snapshot.Id, RestoreSource = source.NodeId },
            prepared: true,
            cancellationToken).ConfigureAwait(false);
        var epoch = attached.Epoch ?? volume.Epoch;
        var restored = new List<string>();
        State.CommandResult? finish = null;
        try
        {
            await runtime.WaitForRevisionAsync(attached.Revision, StateWait, cancellationToken).ConfigureAwait(false);
            await RestoreReplicaAsync(volume, source.NodeId, snapshot.Id, epoch, cancellationToken).ConfigureAwait(false);
            restored.Add(source.NodeId);
            foreach (var other in holders.Where(h => h.NodeId != source.NodeId))
            {
                try
                {
                    await RestoreReplicaAsync(volume, other.NodeId, snapshot.Id, epoch, cancellationToken).ConfigureAwait(false);
                    restored.Add(other.NodeId);
                }
                catch (SlabException e)
                {
                    Log.ReplicaNotRestored(logger, volume.Name, NameOf(other.NodeId), e.Message);
                }
            }
        }
        finally
        {
            // With nothing restored this only lets go (the volume is as it was); else it records the outcome.
            finish = await ReleaseAsync(new FinishRestore { Volume = volume.Id, NodeId = runtime.LocalNodeId, Restored = [.. restored] }, volume.Name, "the end of a restore").ConfigureAwait(false);
        }

        if (finish is null)
        {
            throw new SlabException(
                SlabErrorCode.Unavailable,
                $"volume '{volume.Name}' was restored from '{snapshot.Name}' but the outcome could not be recorded; node {runtime.Options.NodeName} records it when it can (its other replicas are then rebuilt)");
        }

        Log.Restored(logger, volume.Name, snapshot.Name, restored.Count);
        await runtime.WaitForRevisionAsync(finish.Revision, StateWait, cancellationToken).ConfigureAwait(false);
        return Require(volume.Id);
    }

    private async Task RestoreReplicaAsync(VolumeInfo volume, string nodeId, string snapshotId, long epoch, CancellationToken cancellationToken)
    {
        if (nodeId == runtime.LocalNodeId)
        {
            await RestoreLocalReplicaAsync(volume.Id, snapshotId, epoch, cancellationToken).ConfigureAwait(false);
            return;
        }

        var node = NodeOf(nodeId);
        var request = new V1.RestoreReplicaRequest { VolumeId = volume.Id, SnapshotId = snapshotId, Epoch = (ulong)epoch };
        try
        {
            await peers.CallAsync(node, (client, options) => client.RestoreReplicaAsync(request, options), cancellationToken).ConfigureAwait(false);
        }
        catch (SlabException e)
        {
            throw new SlabException(e.Code, $"the replica on {node.Name} could not be restored: {e.Message}", e);
        }
    }

    /// <summary>Replica side (this node): closes the replica server's handle, fences older controllers, and restores the replica.</summary>
    public async Task RestoreLocalReplicaAsync(string volumeId, string snapshotId, long epoch, CancellationToken cancellationToken)
    {
        runtime.Replicas.Release(volumeId);
        await volumes.RestoreLocalReplicaAsync(volumeId, snapshotId, epoch, cancellationToken).ConfigureAwait(false);
    }
}
