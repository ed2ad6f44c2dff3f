using Slab.Cluster.State;
using Slab.Common;

namespace Slab.Cluster.Node;

// Resyncs and rebuilds of detached volumes. A replica that is not in sync is copied by the volume's
// controller, which runs where the volume is attached; a detached volume gets one through an
// internal resync attachment (AttachPurpose.Resync) taken by the node of its first in-sync replica
// that is online. A host attach anywhere takes it over (apply bumps the epoch when it moves, which
// fences the resyncing controller); the node releases it when every replica is in sync.
public sealed partial class ClusterRuntime
{
    /// <summary>Controllers this node opened for internal resync attachments, by volume id (reconciler only).</summary>
    private readonly Dictionary<string, IAsyncDisposable> _resyncLeases = new(StringComparer.Ordinal);

    /// <summary>Takes, keeps or releases this node's internal resync attachment of <paramref name="volume"/>.</summary>
    private async Task ReconcileResyncAttachmentAsync(ClusterState state, VolumeInfo volume, CancellationToken cancellationToken)
    {
        var resyncHere = volume.Attachment is { Purpose: AttachPurpose.Resync } a && a.NodeId == _options.NodeId;
        var needed = NeedsResync(volume);
        if (_resyncLeases.Remove(volume.Id, out var lease))
        {
            if (resyncHere && needed)
            {
                _resyncLeases[volume.Id] = lease; // under way
                return;
            }

            // Done, or taken over by a host attach (here: it keeps the controller open; elsewhere: fenced).
            await lease.DisposeAsync().ConfigureAwait(false);
        }
        else if (resyncHere && needed)
        {
            await OpenForResyncAsync(volume, cancellationToken).ConfigureAwait(false); // held before a restart
            return;
        }

        if (resyncHere)
        {
            await ProposeLoggedAsync(new DetachVolume { Volume = volume.Id, NodeId = _options.NodeId, Purpose = AttachPurpose.Resync }, volume.Name, "released its internal resync attachment (every replica in sync)", cancellationToken).ConfigureAwait(false);
            return;
        }

        if (volume.Attachment is null && needed && DesignatedResyncNode(state, volume) == _options.NodeId
            && await ProposeLoggedAsync(new AttachVolume { Volume = volume.Id, NodeId = _options.NodeId, Purpose = AttachPurpose.Resync }, volume.Name, "attached internally to resync it", cancellationToken).ConfigureAwait(false))
        {
            await OpenForResyncAsync(volume, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Releases the resync controllers of volumes the cluster no longer has.</summary>
    private async Task ReleaseResyncLeasesOfDeletedVolumesAsync(ClusterState state)
    {
        foreach (var volumeId in _resyncLeases.Keys.Where(id => !state.Volumes.ContainsKey(id)).ToList())
        {
            _resyncLeases.Remove(volumeId, out var lease);
            await lease!.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>At shutdown: gives up this node's resync attachments so another node can take the copies over at once.</summary>
    private async Task ReleaseResyncAttachmentsAsync(CancellationToken cancellationToken)
    {
        foreach (var volume in State.Current.Volumes.Values)
        {
            if (volume.Attachment is { Purpose: AttachPurpose.Resync } a && a.NodeId == _options.NodeId)
            {
                await ProposeLoggedAsync(new DetachVolume { Volume = volume.Id, NodeId = _options.NodeId, Purpose = AttachPurpose.Resync }, volume.Name, "released its internal resync attachment (this node stops)", cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A replica is not in sync while its node is online, and an in-sync replica can be read.</summary>
    private bool NeedsResync(VolumeInfo volume)
        => volume.Replicas.Any(r => r.State != ReplicaState.InSync && IsAlive(r.NodeId))
            && volume.Replicas.Any(r => r.State == ReplicaState.InSync && IsAlive(r.NodeId));

    /// <summary>
    /// The node that resyncs a detached volume: the first in-sync replica's that is online (reads stay
    /// local), else the first online node of a replica being copied (when the in-sync copies are on
    /// nodes taking no attachments, e.g. decommissioning).
    /// </summary>
    private string? DesignatedResyncNode(ClusterState state, VolumeInfo volume)
    {
        bool Usable(ReplicaInfo r) => IsAlive(r.NodeId) && state.Nodes.TryGetValue(r.NodeId, out var node) && node.Status == Slab.Cluster.State.NodeStatus.Online;
        return (volume.Replicas.FirstOrDefault(r => r.State == ReplicaState.InSync && Usable(r))
            ?? volume.Replicas.FirstOrDefault(r => r.State != ReplicaState.InSync && Usable(r)))?.NodeId;
    }

    private async Task OpenForResyncAsync(VolumeInfo volume, CancellationToken cancellationToken)
    {
        try
        {
            _resyncLeases[volume.Id] = await _volumes.OpenControllerAsync(volume.Id, cancellationToken).ConfigureAwait(false);
            SignalReconcile(); // the next pass starts the copy under the attachment just recorded
        }
        catch (SlabException e)
        {
            Log.ReconcileFailed(_logger, volume.Name, $"cannot open it to resync: {e.Message}");
        }
    }

    /// <summary>Proposes <paramref name="command"/> (prepared by the leader); true when committed. Failures are logged.</summary>
    private async Task<bool> ProposeLoggedAsync(ClusterCommand command, string volumeName, string action, CancellationToken cancellationToken)
    {
        try
        {
            var result = await ProposeOrThrowAsync(command, prepared: true, cancellationToken).ConfigureAwait(false);
            await WaitForRevisionAsync(result.Revision, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
            Log.VolumeReconciled(_logger, volumeName, action);
            return true;
        }
        catch (SlabException e)
        {
            Log.ReconcileFailed(_logger, volumeName, e.Message);
            return false;
        }
    }
}
