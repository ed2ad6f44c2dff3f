using Grpc.Core;
using Slab.Cluster.Node;
using Slab.Common;
using Slab.Store;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;

/// <summary>Node-to-node calls answered by the node that holds a replica.</summary>
public sealed class NodeInternalService(ClusterRuntime runtime, VolumeStore store, Volumes.VolumeManager volumes) : V1.NodeInternal.NodeInternalBase
{
    public override Task<V1.ResyncStatusResponse> ResyncStatus(V1.ResyncStatusRequest request, ServerCallContext context)
        => Task.FromResult(DescribeResync(volumes, request.VolumeId));

    public override async Task<V1.CheckVolumeResponse> CheckReplicas(V1.CheckReplicasRequest request, ServerCallContext context)
    {
        var report = await volumes.CheckReplicasAsync(request.VolumeId, context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(report, runtime.Options.NodeName);
    }

    /// <summary>The resync the controller of <paramref name="volumeId"/> on this node runs; empty when none.</summary>
    internal static V1.ResyncStatusResponse DescribeResync(Volumes.VolumeManager volumes, string volumeId)
        => volumes.ControllerOf(volumeId)?.Resync is { } progress
            ? new V1.ResyncStatusResponse { NodeId = progress.NodeId, Progress = ProtoMapping.ToProto(progress) }
            : new V1.ResyncStatusResponse();

    public override async Task<V1.LocalReplica> SyncReplica(V1.SyncReplicaRequest request, ServerCallContext context)
    {
        var local = await runtime.SyncReplicaAsync(request.VolumeId, (long)Math.Min(request.MinRevision, long.MaxValue), context.CancellationToken)
            .ConfigureAwait(false);
        return Describe(local, store);
    }

    public override async Task<V1.LocalReplica> SetReplicaFlags(V1.SetReplicaFlagsRequest request, ServerCallContext context)
    {
        var local = store.FindVolume(request.VolumeId)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"node {runtime.Options.NodeName} holds no replica of volume '{request.VolumeId}'");
        local = await store.SaveVolumeAsync(local with { Formatted = request.Formatted, FilesystemGrowPending = request.FilesystemGrowPending }, context.CancellationToken)
            .ConfigureAwait(false);
        return Describe(local, store);
    }

    internal static V1.LocalReplica Describe(VolumeRecord local, VolumeStore store) => new()
    {
        VolumeId = local.Id,
        SizeBytes = (ulong)local.SizeBytes,
        UsedBytes = (ulong)store.AllocatedBytes(local),
        Formatted = local.Formatted,
        FilesystemGrowPending = local.FilesystemGrowPending,
    };
}
