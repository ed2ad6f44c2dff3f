using Grpc.Core;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Replication;
using Slab.Store;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

/// <summary>
/// Volumes whose replica is on another node, for attaching them here: found in the cluster state,
/// described by the replica's node (SyncReplica), opened as a <see cref="RemoteReplicaTarget"/> over
/// the replication protocol at the volume's current epoch.
/// </summary>
public sealed class ClusterRemoteVolumes(ClusterRuntime runtime, PeerApi peers, ReplicationOptions replication, TimeProvider time, ILoggerFactory loggers)
    : IRemoteVolumeSource
{
    private readonly ILogger _logger = loggers.CreateLogger<RemoteReplicaTarget>();

    public async Task<VolumeRecord?> FindAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var state = runtime.State.Current;
        if (state.FindVolume(nameOrId) is not { } volume)
        {
            return null;
        }

        var replica = volume.Replicas.FirstOrDefault(r => r.State == ReplicaState.InSync)
            ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' has no in-sync replica");
        if (replica.NodeId == runtime.LocalNodeId)
        {
            // Ours: make sure the reconciler has created it, then the store serves it.
            await runtime.SyncReplicaAsync(volume.Id, state.Revision, cancellationToken).ConfigureAwait(false);
            return null;
        }

        var node = RequireReachable(state, volume, replica);
        try
        {
            var local = await peers.Internal(node)
                .SyncReplicaAsync(new V1.SyncReplicaRequest { VolumeId = volume.Id, MinRevision = (ulong)state.Revision }, PeerApi.Call(cancellationToken))
                .ConfigureAwait(false);
            return ToRecord(volume, local);
        }
        catch (RpcException e)
        {
            throw PeerApi.Translate(e, node);
        }
    }

    public IReplicaTarget OpenReplica(VolumeRecord volume)
    {
        var state = runtime.State.Current;
        var info = state.FindVolume(volume.Id) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found in the cluster");
        var replica = info.Replicas.FirstOrDefault(r => r.State == ReplicaState.InSync)
            ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' has no in-sync replica");
        var node = RequireReachable(state, info, replica);
        var data = NodeEndpoints.Parse(NodeEndpoints.From(node.Addresses).Replication)
            ?? throw new SlabException(SlabErrorCode.Unavailable, $"node {node.Name} has no replication endpoint in the cluster state");
        var target = new RemoteReplicaTarget(
            Guid.ParseExact(volume.Id, "N"),
            volume.SizeBytes,
            info.Epoch,
            new TcpReplicaConnector(data, node.Name, runtime.Options.Advertise),
            replication,
            Guid.ParseExact(runtime.LocalNodeId, "N"),
            time,
            _logger);
        return new RemoteReplica(target);
    }

    public async Task<VolumeRecord> SaveFlagsAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        var state = runtime.State.Current;
        var info = state.FindVolume(volume.Id) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found in the cluster");
        var replica = info.Replicas.FirstOrDefault() ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' has no replica");
        var node = RequireReachable(state, info, replica);
        try
        {
            var local = await peers.Internal(node).SetReplicaFlagsAsync(
                new V1.SetReplicaFlagsRequest { VolumeId = volume.Id, Formatted = volume.Formatted, FilesystemGrowPending = volume.FilesystemGrowPending },
                PeerApi.Call(cancellationToken)).ConfigureAwait(false);
            return ToRecord(info, local) with { Epoch = volume.Epoch };
        }
        catch (RpcException e)
        {
            throw PeerApi.Translate(e, node);
        }
    }

    private NodeInfo RequireReachable(ClusterState state, VolumeInfo volume, ReplicaInfo replica)
    {
        if (!state.Nodes.TryGetValue(replica.NodeId, out var node))
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"the replica of volume '{volume.Name}' is on node {replica.NodeId}, which is not in the cluster");
        }

        if (!runtime.IsAlive(node.Id))
        {
            throw new SlabException(
                SlabErrorCode.Unavailable,
                $"the replica of volume '{volume.Name}' is on node {node.Name}, which is offline; with 1 replica the volume is usable again when that node returns");
        }

        return node;
    }

    private VolumeRecord ToRecord(VolumeInfo volume, V1.LocalReplica local) => ClusterRuntime.LocalRecordOf(volume, runtime.Options.ClusterId) with
    {
        SizeBytes = (long)local.SizeBytes,
        Formatted = local.Formatted,
        FilesystemGrowPending = local.FilesystemGrowPending,
    };

    /// <summary>A remote replica as the volume controller's replica target.</summary>
    private sealed class RemoteReplica(RemoteReplicaTarget target) : IReplicaTarget
    {
        public long Size => target.Size;

        public BlockTargetFeatures Features => target.Features;

        public BlockGeometry Geometry => target.Geometry;

        /// <summary>The replica's node grows the file (it follows the cluster state); this side only widens its bounds.</summary>
        public void Grow(long newSizeBytes) => target.SetSize(newSizeBytes);

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
            => target.ReadAsync(offset, destination, cancellationToken);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
            => target.WriteAsync(offset, source, flags, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken) => target.FlushAsync(cancellationToken);

        public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => target.TrimAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
            => target.WriteZeroesAsync(offset, length, flags, cancellationToken);

        public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
            => target.GetExtentsAsync(offset, length, destination, cancellationToken);

        // The volume manager closes controllers synchronously; the connections close in the background.
        public void Dispose() => _ = target.DisposeAsync().AsTask();
    }
}
