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
public sealed partial class ClusterVolumeOperations(ClusterRuntime runtime, VolumeManager volumes, VolumeStore store, PeerApi peers, ILogger<ClusterVolumeOperations> logger)
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
        try
        {
            foreach (var replica in volume.Replicas)
            {
                await SyncReplicaAsync(volume, replica.NodeId, result.Revision, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (SlabException e)
        {
            // Nothing half-made: take the record back (the replica's node removes any file it made).
            try
            {
                await runtime.ProposeOrThrowAsync(new DeleteVolume { Volume = volume.Id }, prepared: false, CancellationToken.None).ConfigureAwait(false);
            }
            catch (SlabException)
            {
                // The record stays; the replica's node creates the replica when it can, and delete works as usual.
            }

            throw new SlabException(e.Code, $"volume '{command.Name}' was not created: its replica could not be made: {e.Message}", e);
        }

        return volume;
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

        var node = NodeOf(nodeId);
        try
        {
            return await peers.Internal(node).SyncReplicaAsync(
                new V1.SyncReplicaRequest { VolumeId = volume.Id, MinRevision = (ulong)revision }, PeerApi.Call(cancellationToken));
        }
        catch (RpcException e)
        {
            throw PeerApi.Translate(e, node);
        }
    }

    /// <summary>This node's replica as the node-to-node API describes it.</summary>
    public static V1.LocalReplica Describe(VolumeRecord local, VolumeStore store) => new()
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
        [LoggerMessage(Level = LogLevel.Information, Message = "Snapshot {Volume}@{Snapshot} taken on {Replicas} replica(s) at epoch {Epoch}")]
        public static partial void SnapshotTaken(ILogger logger, string volume, string snapshot, int replicas, long epoch);

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
