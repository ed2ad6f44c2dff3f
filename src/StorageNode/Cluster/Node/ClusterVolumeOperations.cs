using Grpc.Core;
using Microsoft.Extensions.Logging;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Store;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

/// <summary>
/// Cluster volume operations that span nodes, carried out by the node a client asked: create (the
/// record committed, then every replica made, else the record taken back), snapshots (pending, the
/// in-sync replicas reflinked at one write boundary, committed), clones of snapshots, and restores.
/// The API services map messages onto it; the rules that must hold cluster-wide are checked again by
/// the Raft transitions.
/// </summary>
/// <remarks>Thread-safe; every call may run concurrently with others.</remarks>
public sealed partial class ClusterVolumeOperations(ClusterRuntime runtime, VolumeManager volumes, IVolumeStore store, PeerApi peers, ILogger<ClusterVolumeOperations> logger)
{
    private static readonly TimeSpan StateWait = TimeSpan.FromSeconds(5);

    /// <summary>The volume by name or id in this node's read copy of the state.</summary>
    /// <exception cref="SlabException">Empty reference (InvalidArgument); no such volume (NotFound).</exception>
    public VolumeInfo Require(string nameOrId)
    {
        if (string.IsNullOrEmpty(nameOrId))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "volume name is empty");
        }

        return runtime.State.Current.FindVolume(nameOrId) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{nameOrId}' not found");
    }

    /// <summary>
    /// Creates a volume (placement by the leader): commits the record, then has every replica's node
    /// make its replica; if one cannot, takes the record back so nothing is half made.
    /// </summary>
    public async Task<VolumeInfo> CreateAsync(CreateVolume command, CancellationToken cancellationToken)
    {
        var result = await runtime.ProposeOrThrowAsync(command, prepared: true, cancellationToken).ConfigureAwait(false);
        await runtime.WaitForRevisionAsync(result.Revision, StateWait, cancellationToken).ConfigureAwait(false);
        var volume = runtime.State.Current.FindVolume(command.VolumeId)
            ?? throw new SlabException(SlabErrorCode.Unavailable, $"volume '{command.Name}' was created but this node's copy of the cluster state does not show it yet; inspect it again");

        // Nothing half-made: the record is taken back (the replica's node removes any file it made);
        // if even that fails it stays, the replica's node makes the replica when it can, and delete works as usual.
        await MakeReplicasOrUndoAsync(
            volume, volume.Replicas, result.Revision, new DeleteVolume { Volume = volume.Id }, e => $"volume '{command.Name}' was not created: its replica could not be made: {e.Message}", cancellationToken)
            .ConfigureAwait(false);
        return volume;
    }

    /// <summary>
    /// Has the nodes of <paramref name="replicas"/> make them (state at <paramref name="revision"/>);
    /// when one cannot, proposes <paramref name="undo"/> (best effort, not cancelled with the request)
    /// and throws the failure with the message <paramref name="failure"/> gives.
    /// </summary>
    private async Task MakeReplicasOrUndoAsync(
        VolumeInfo volume, IEnumerable<ReplicaInfo> replicas, long revision, ClusterCommand undo, Func<SlabException, string> failure, CancellationToken cancellationToken)
    {
        try
        {
            foreach (var replica in replicas)
            {
                await SyncReplicaAsync(volume, replica.NodeId, revision, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (SlabException e)
        {
            try
            {
                await runtime.ProposeOrThrowAsync(undo, prepared: true, CancellationToken.None).ConfigureAwait(false);
            }
            catch (SlabException)
            {
                // The change stays; see the caller for what becomes of it.
            }

            throw new SlabException(e.Code, failure(e), e);
        }
    }

    /// <summary>
    /// ha-update: the leader places (or picks) the replica, the change is committed, a new replica's
    /// node makes it before the answer (else the change is taken back), and the controller (where the
    /// volume is attached) rebuilds it in the background. Returns the volume as changed.
    /// </summary>
    /// <exception cref="SlabException">Unknown volume or node; a count out of range or unchanged (from the transition); no placement; the new replica could not be made.</exception>
    public async Task<VolumeInfo> ChangeReplicationAsync(string volumeReference, int repl, string node, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        // The replica count's range and change are checked by the transition (ChangeReplication).
        if (Math.Abs(repl - volume.Replicas.Length) > 1 && node.Length > 0)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "--node names one replica: change --repl by one at a time when you give --node");
        }

        var before = volume.Replicas.Select(r => r.NodeId).ToHashSet(StringComparer.Ordinal);
        var result = await runtime.ProposeOrThrowAsync(new ChangeReplication { Volume = volume.Id, Repl = repl, Node = node }, prepared: true, cancellationToken).ConfigureAwait(false);
        await runtime.WaitForRevisionAsync(result.Revision, StateWait, cancellationToken).ConfigureAwait(false);
        volume = Require(volume.Id);
        // Nothing half-made: a new replica that cannot be made leaves the set again (its node removes
        // any file it made); if even that fails it stays, rebuilding once its node can make it.
        foreach (var added in volume.Replicas.Where(r => !before.Contains(r.NodeId)))
        {
            await MakeReplicasOrUndoAsync(
                volume,
                [added],
                result.Revision,
                new ChangeReplication { Volume = volume.Id, Repl = volume.Replicas.Length - 1, Node = added.NodeId },
                e => $"volume '{volume.Name}' keeps {before.Count} replica(s): the new replica could not be made: {e.Message}",
                cancellationToken).ConfigureAwait(false);
        }

        // Where the volume is attached here, follow at once rather than at the next reconcile.
        if (volume.Attachment?.NodeId == runtime.LocalNodeId)
        {
            await volumes.FollowReplicaSetAsync(volume.Id, [.. volume.Replicas.Select(r => r.NodeId)], cancellationToken).ConfigureAwait(false);
        }

        return volume;
    }

    /// <summary>
    /// Grows a volume and/or changes its labels (<paramref name="labelChanges"/>: an empty value
    /// removes a label; merged when the command applies, so concurrent updates do not lose each
    /// other's labels). A grow of a volume attached elsewhere is carried out by that node (its device
    /// grows there), asked over <c>NodeInternal.UpdateVolume</c>. Returns the volume as updated.
    /// </summary>
    /// <exception cref="SlabException">Unknown volume; a shrink or bad label (InvalidArgument, from the transition); the attached node did not answer.</exception>
    public async Task<VolumeInfo> UpdateAsync(string volumeReference, long? sizeBytes, IReadOnlyDictionary<string, string> labelChanges, IoLimits? limits, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        long revision;
        if ((sizeBytes is not null || limits is not null) && volume.Attachment is { } attachment && attachment.NodeId != runtime.LocalNodeId)
        {
            // The attached node's controller grows and takes the new limits: it carries the update out.
            var holder = NodeOf(attachment.NodeId);
            var request = new V1.UpdateVolumeRequest { Volume = volume.Id };
            if (sizeBytes is { } size)
            {
                request.SizeBytes = (ulong)size;
            }

            if (limits is not null)
            {
                request.Limits = new V1.IoLimits
                {
                    MaxReadIops = (ulong)limits.ReadIops,
                    MaxWriteIops = (ulong)limits.WriteIops,
                    MaxReadBytesPerSecond = (ulong)limits.ReadBytesPerSecond,
                    MaxWriteBytesPerSecond = (ulong)limits.WriteBytesPerSecond,
                };
            }

            foreach (var (key, value) in labelChanges)
            {
                request.Labels[key] = value;
            }

            revision = (long)(await peers.CallAsync(holder, (client, options) => client.UpdateVolumeAsync(request, options), cancellationToken).ConfigureAwait(false)).Revision;
        }
        else
        {
            revision = await UpdateHereAsync(volume, sizeBytes, labelChanges, limits, cancellationToken).ConfigureAwait(false);
        }

        await runtime.WaitForRevisionAsync(revision, StateWait, cancellationToken).ConfigureAwait(false);
        return Require(volume.Id);
    }

    /// <summary>
    /// The update on this node: committed, then every replica grown (before the answer), then the
    /// device attached here widened, new QoS limits given to the controller here. Returns a revision that includes it.
    /// </summary>
    public async Task<long> UpdateHereAsync(VolumeInfo volume, long? sizeBytes, IReadOnlyDictionary<string, string> labelChanges, IoLimits? limits, CancellationToken cancellationToken)
    {
        var changes = labelChanges.Count > 0 ? System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, labelChanges) : null;
        var result = await runtime.ProposeOrThrowAsync(new UpdateVolume { Volume = volume.Id, SizeBytes = sizeBytes, LabelChanges = changes, Limits = limits }, prepared: false, cancellationToken)
            .ConfigureAwait(false);
        if (limits is not null)
        {
            volumes.ApplyLimits(volume.Id, limits);
        }

        if (sizeBytes is { } grown)
        {
            await runtime.WaitForRevisionAsync(result.Revision, StateWait, cancellationToken).ConfigureAwait(false);
            volume = Require(volume.Id);
            foreach (var replica in volume.Replicas)
            {
                await SyncReplicaAsync(volume, replica.NodeId, result.Revision, cancellationToken).ConfigureAwait(false);
            }

            await volumes.FollowRemoteGrowAsync(volume.Id, grown, cancellationToken).ConfigureAwait(false);
        }

        return result.Revision;
    }

    /// <summary>
    /// Has <paramref name="nodeId"/> make its replica of <paramref name="volume"/> match the state at
    /// <paramref name="revision"/> or later (create or grow it) and describe it.
    /// </summary>
    /// <exception cref="SlabException">The node holds no replica, is not in the cluster, or did not answer.</exception>
    public async Task<V1.LocalReplica> SyncReplicaAsync(VolumeInfo volume, string nodeId, long revision, CancellationToken cancellationToken)
    {
        if (nodeId == runtime.LocalNodeId)
        {
            var local = await runtime.SyncReplicaAsync(volume.Id, revision, cancellationToken).ConfigureAwait(false);
            return Describe(local, store);
        }

        var request = new V1.SyncReplicaRequest { VolumeId = volume.Id, MinRevision = (ulong)revision };
        return await peers.CallAsync(NodeOf(nodeId), (client, options) => client.SyncReplicaAsync(request, options), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>This node's replica as the node-to-node API describes it.</summary>
    public static V1.LocalReplica Describe(VolumeRecord local, IVolumeStore store) => new()
    {
        VolumeId = local.Id,
        SizeBytes = (ulong)local.SizeBytes,
        UsedBytes = (ulong)store.AllocatedBytes(local),
        Formatted = local.Formatted,
        FilesystemGrowPending = local.FilesystemGrowPending,
    };

    private NodeInfo NodeOf(string nodeId)
        => runtime.State.Current.Nodes.TryGetValue(nodeId, out var node)
            ? node
            : throw new SlabException(SlabErrorCode.FailedPrecondition, $"node {nodeId} is not in the cluster");

    private string NameOf(string nodeId) => runtime.State.Current.Nodes.TryGetValue(nodeId, out var node) ? node.Name : nodeId;

    private static string NewId() => Guid.NewGuid().ToString("N");

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Snapshot {Volume}@{Snapshot} taken on {Replicas} replica(s) at epoch {Epoch}; writes held {HeldMs:0} ms")]
        public static partial void SnapshotTaken(ILogger logger, string volume, string snapshot, int replicas, long epoch, double heldMs);

        [LoggerMessage(Level = LogLevel.Information, Message = "Group snapshot {Snapshot} of {Volumes} volume(s) on {Nodes} node(s) taken; writes held {HeldMs:0} ms")]
        public static partial void GroupSnapshotTaken(ILogger logger, string snapshot, int volumes, int nodes, double heldMs);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Snapshot {Volume}@{Snapshot} was not taken: {Reason}")]
        public static partial void SnapshotAbandoned(ILogger logger, string volume, string snapshot, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume} restored from snapshot {Snapshot} on {Restored} replica(s); the others are rebuilt from them")]
        public static partial void Restored(ILogger logger, string volume, string snapshot, int restored);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: the replica on {Node} was not restored ({Reason}); it is rebuilt from a restored one")]
        public static partial void ReplicaNotRestored(ILogger logger, string volume, string node, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: {Action} could not be recorded ({Reason}); the reconciler finishes it")]
        public static partial void CleanupDeferred(ILogger logger, string volume, string action, string reason);
    }
}
