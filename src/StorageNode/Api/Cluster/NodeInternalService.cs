using Grpc.Core;
using Slab.Cluster.Node;
using Slab.Common;
using Slab.Store;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;

/// <summary>Node-to-node calls answered by the node that holds a replica.</summary>
public sealed class NodeInternalService(ClusterRuntime runtime, VolumeStore store) : V1.NodeInternal.NodeInternalBase
{
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
