using Grpc.Core;
using Slab.Cluster.Node;
using Slab.Common;
using Slab.Store;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;

/// <summary>Node-to-node calls answered by the node that holds a replica.</summary>
public sealed class NodeInternalService(ClusterRuntime runtime, IVolumeStore store, Volumes.VolumeManager volumes, ClusterVolumeOperations operations) : V1.NodeInternal.NodeInternalBase
{
    public override async Task SnapshotChanges(V1.SnapshotChangesRequest request, IServerStreamWriter<V1.SnapshotChangesBatch> responseStream, ServerCallContext context)
    {
        const int batchSize = 4096;
        var volume = store.FindVolume(request.VolumeId)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"this node holds no replica of volume {request.VolumeId}");
        var ranges = store.SnapshotDifferences(volume, request.SnapshotId, request.BaseSnapshotId);
        for (var start = 0; start < ranges.Count; start += batchSize)
        {
            var batch = new V1.SnapshotChangesBatch();
            for (var i = start; i < Math.Min(start + batchSize, ranges.Count); i++)
            {
                batch.Offsets.Add((ulong)ranges[i].Offset);
                batch.Lengths.Add((ulong)ranges[i].Length);
            }

            await responseStream.WriteAsync(batch, context.CancellationToken).ConfigureAwait(false);
        }
    }

    public override async Task<V1.TakeSnapshotResponse> TakeSnapshot(V1.TakeSnapshotRequest request, ServerCallContext context)
    {
        var (snapshotId, revision) = await operations.TakeSnapshotHereAsync(request.VolumeId, request.Name, context.CancellationToken).ConfigureAwait(false);
        return new V1.TakeSnapshotResponse { SnapshotId = snapshotId, Revision = (ulong)revision };
    }

    /// <summary>This node's part of a group snapshot (see the proto): start → held → cut → cut done; writes resume when the stream ends.</summary>
    public override async Task HoldForGroupSnapshot(IAsyncStreamReader<V1.GroupHoldRequest> requestStream, IServerStreamWriter<V1.GroupHoldReply> responseStream, ServerCallContext context)
    {
        var cancellationToken = context.CancellationToken;
        if (!await requestStream.MoveNext(cancellationToken).ConfigureAwait(false) || requestStream.Current.StepCase != V1.GroupHoldRequest.StepOneofCase.Start)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "a group hold starts with a start message");
        }

        var start = requestStream.Current.Start;
        var members = start.Members.Select(m => new GroupSnapshotMember(m.VolumeId, m.SnapshotId, (long)Math.Min(m.PendingRevision, long.MaxValue))).ToList();
        if (members.Count == 0 || members.Any(m => m.VolumeId.Length == 0 || m.SnapshotId.Length == 0))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "a group hold names at least one volume, each with its snapshot id");
        }

        var holdTimeout = TimeSpan.FromMilliseconds(Math.Clamp(start.HoldTimeoutMs, 1_000u, 60_000u));
        var boundaries = await operations.HoldAndCutAsync(
            members,
            async token =>
            {
                await responseStream.WriteAsync(new V1.GroupHoldReply { Held = new V1.GroupHeld() }, token).ConfigureAwait(false);
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(token);
                wait.CancelAfter(holdTimeout);
                bool moved;
                try
                {
                    moved = await requestStream.MoveNext(wait.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    throw new SlabException(SlabErrorCode.Unavailable, $"no cut came within {holdTimeout.TotalSeconds:0} s; writes resumed and the group snapshot is abandoned");
                }

                if (!moved || requestStream.Current.StepCase != V1.GroupHoldRequest.StepOneofCase.Cut)
                {
                    throw new SlabException(SlabErrorCode.FailedPrecondition, "the group snapshot's coordinator ended before the cut; writes resumed");
                }
            },
            cancellationToken).ConfigureAwait(false);
        var done = new V1.GroupCutDone();
        foreach (var (volumeId, boundary) in boundaries)
        {
            var message = new V1.GroupBoundary { VolumeId = volumeId, Epoch = (ulong)boundary.Epoch };
            message.InSyncNodeIds.Add(boundary.InSyncNodeIds);
            done.Boundaries.Add(message);
        }

        await responseStream.WriteAsync(new V1.GroupHoldReply { Cut = done }, cancellationToken).ConfigureAwait(false);
    }

    public override async Task<V1.SnapshotReplicaResponse> SnapshotReplica(V1.SnapshotReplicaRequest request, ServerCallContext context)
    {
        await operations.SnapshotLocalReplicaAsync(request.VolumeId, request.SnapshotId, (long)Math.Min(request.MinRevision, long.MaxValue), Epoch(request.Epoch), context.CancellationToken)
            .ConfigureAwait(false);
        return new V1.SnapshotReplicaResponse();
    }

    public override async Task<V1.RestoreReplicaResponse> RestoreReplica(V1.RestoreReplicaRequest request, ServerCallContext context)
    {
        await operations.RestoreLocalReplicaAsync(request.VolumeId, request.SnapshotId, Epoch(request.Epoch), context.CancellationToken).ConfigureAwait(false);
        return new V1.RestoreReplicaResponse();
    }

    public override async Task<V1.UpdateVolumeResponse> UpdateVolume(V1.UpdateVolumeRequest request, ServerCallContext context)
    {
        long? size = request.HasSizeBytes ? volumes.ValidateNewSize(request.SizeBytes) : null;
        var revision = await operations.UpdateHereAsync(operations.Require(request.Volume), size, request.Labels, ProtoMapping.FromProto(request.Limits), context.CancellationToken).ConfigureAwait(false);
        return new V1.UpdateVolumeResponse { Revision = (ulong)revision };
    }

    public override Task<V1.VolumeStats> GetVolumeStats(V1.VolumeStatsRequest request, ServerCallContext context)
        => Task.FromResult(DescribeStats(runtime, volumes, store, operations.Require(request.Volume)));

    /// <summary>The counters of the volume's controller on this node (inactive zeros when it is not open here); used bytes of this node's replica.</summary>
    public static V1.VolumeStats DescribeStats(ClusterRuntime runtime, Volumes.VolumeManager volumes, IVolumeStore store, Slab.Cluster.State.VolumeInfo volume)
    {
        var local = store.FindVolume(volume.Id);
        return ProtoMapping.ToProto(
            volume.Id,
            volume.Name,
            volumes.ControllerOf(volume.Id),
            runtime.LocalNodeId,
            runtime.Options.NodeName,
            volume.Spec.Limits,
            local is null ? 0 : store.AllocatedBytes(local),
            runtime.Time.GetUtcNow());
    }

    private static long Epoch(ulong epoch) => epoch is 0 or > long.MaxValue
        ? throw new SlabException(SlabErrorCode.InvalidArgument, $"epoch {epoch} is out of range")
        : (long)epoch;

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
        return ClusterVolumeOperations.Describe(local, store);
    }

    public override async Task<V1.LocalReplica> SetReplicaFlags(V1.SetReplicaFlagsRequest request, ServerCallContext context)
    {
        var local = store.FindVolume(request.VolumeId)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"node {runtime.Options.NodeName} holds no replica of volume '{request.VolumeId}'");
        local = await store.SaveVolumeAsync(local with { Formatted = request.Formatted, FilesystemGrowPending = request.FilesystemGrowPending }, context.CancellationToken)
            .ConfigureAwait(false);
        return ClusterVolumeOperations.Describe(local, store);
    }

}
