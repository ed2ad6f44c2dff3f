using Grpc.Core;
using Slab.Cluster.Node;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;


/// <summary>
/// The Volumes service on a cluster node: volumes are records of the Raft state (names unique in
/// the cluster), placed by the leader, their replicas made by the nodes that hold them. Any node
/// answers for any volume.
/// </summary>
public sealed class ClusterVolumesService(ClusterRuntime runtime, VolumeManager volumes, Store.IVolumeStore store, PeerApi peers, ClusterVolumeOperations operations) : V1.Volumes.VolumesBase
{
    public override async Task<V1.Volume> Create(V1.CreateVolumeRequest request, ServerCallContext context)
    {
        var spec = request.Spec ?? new V1.VolumeSpec();
        var (size, repl, fs, labels) = volumes.ValidateSpec(
            request.Name, new VolumeSpecification(spec.SizeBytes, spec.Repl, spec.Fs, ProtoMapping.FromProto(spec.IoPriority), spec.Labels));
        RequireNoEmptyEntry("nodes", spec.Nodes);
        RequireNoEmptyEntry("zones", spec.Zones);
        RequireNoEmptyEntry("racks", spec.Racks);

        var id = Guid.NewGuid().ToString("N");
        var volume = await operations.CreateAsync(
            new CreateVolume
            {
                RequestId = id,
                VolumeId = id,
                Name = request.Name,
                Spec = new VolumeSpec
                {
                    SizeBytes = size,
                    Repl = repl,
                    Fs = fs,
                    IoPriority = ProtoMapping.FromProto(spec.IoPriority) ?? Store.IoPriority.Medium,
                    Limits = ProtoMapping.FromProto(spec.Limits) ?? IoLimits.None,
                    Labels = labels,
                    Nodes = [.. spec.Nodes],
                    Zones = [.. spec.Zones.Distinct(StringComparer.Ordinal)],
                    Racks = [.. spec.Racks.Distinct(StringComparer.Ordinal)],
                },
                PreferredNode = request.PreferredNode.Length > 0 ? request.PreferredNode : null,
            },
            context.CancellationToken).ConfigureAwait(false);
        return await DescribeAsync(volume, includeRemoteUsage: false, context.CancellationToken).ConfigureAwait(false);
    }

    private static void RequireNoEmptyEntry(string flag, IEnumerable<string> entries)
    {
        if (entries.Any(string.IsNullOrWhiteSpace))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"--{flag} has an empty entry");
        }
    }

    public override async Task<V1.Volume> Inspect(V1.InspectVolumeRequest request, ServerCallContext context)
        => await DescribeAsync(Require(request.Volume), includeRemoteUsage: true, context.CancellationToken).ConfigureAwait(false);

    public override Task<V1.EnumerateVolumesResponse> Enumerate(V1.EnumerateVolumesRequest request, ServerCallContext context)
    {
        var state = runtime.State.Current;
        var response = new V1.EnumerateVolumesResponse();
        foreach (var volume in state.Volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal))
        {
            if (request.Labels.All(l => volume.Spec.Labels.TryGetValue(l.Key, out var value) && value == l.Value))
            {
                response.Volumes.Add(ClusterProtoMapping.ToProto(volume, state, LocalUsedBytes(volume.Id), volumes.GetAttachment(volume.Id), runtime.IsAlive));
            }
        }

        return Task.FromResult(response);
    }

    public override async Task<V1.Volume> Update(V1.UpdateVolumeRequest request, ServerCallContext context)
    {
        long? size = request.HasSizeBytes ? volumes.ValidateNewSize(request.SizeBytes) : null;
        var limits = request.Limits is null ? null : ProtoMapping.FromProto(request.Limits, Require(request.Volume).Spec.Limits);
        var volume = await operations.UpdateAsync(request.Volume, size, request.Labels, limits, context.CancellationToken).ConfigureAwait(false);
        return await DescribeAsync(volume, includeRemoteUsage: false, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>The counters of the volume's controller: from the node where it is attached, else this node's if it has it open.</summary>
    public override async Task<V1.VolumeStats> Stats(V1.VolumeStatsRequest request, ServerCallContext context)
    {
        var volume = Require(request.Volume);
        V1.VolumeStats stats;
        if (volume.Attachment is { } attachment && attachment.NodeId != runtime.LocalNodeId)
        {
            var state = runtime.State.Current;
            var holder = state.Nodes.TryGetValue(attachment.NodeId, out var node) ? node : null;
            if (holder is null || !runtime.IsAlive(holder.Id))
            {
                throw new SlabException(
                    SlabErrorCode.Unavailable,
                    $"volume '{volume.Name}' is attached on {holder?.Name ?? attachment.NodeId}, which is offline: its I/O counters live there (attach it elsewhere to take it over)");
            }

            stats = await peers.CallAsync(holder, (client, options) => client.GetVolumeStatsAsync(new V1.VolumeStatsRequest { Volume = volume.Id }, options), context.CancellationToken)
                .ConfigureAwait(false);
        }
        else
        {
            stats = NodeInternalService.DescribeStats(runtime, volumes, store, volume);
        }

        // Used bytes from a replica's node, as inspect reports them.
        stats.UsedBytes = (await DescribeAsync(volume, includeRemoteUsage: true, context.CancellationToken).ConfigureAwait(false)).UsedBytes;
        return stats;
    }

    public override async Task<V1.DeleteVolumeResponse> Delete(V1.DeleteVolumeRequest request, ServerCallContext context)
    {
        var volume = Require(request.Volume);
        if (volume.Attachment is { Purpose: AttachPurpose.Host } attachment)
        {
            // An internal resync attachment does not hold a delete back: its node lets go when the volume is gone.
            var state = runtime.State.Current;
            var where = state.Nodes.TryGetValue(attachment.NodeId, out var node) ? node.Name : attachment.NodeId;
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is attached on {where}; detach it first");
        }

        // The replicas' nodes remove their files when they see the volume gone from the state.
        await runtime.ProposeOrThrowAsync(new DeleteVolume { Volume = volume.Id }, prepared: false, context.CancellationToken).ConfigureAwait(false);
        return new V1.DeleteVolumeResponse();
    }

    /// <summary>Clones <c>VOL@SNAP</c>, or <c>VOL</c> at a write boundary (through a snapshot taken for it).</summary>
    public override async Task<V1.Volume> Clone(V1.CloneVolumeRequest request, ServerCallContext context)
    {
        var volume = await operations.CloneAsync(request.Source, request.Name, request.Labels, context.CancellationToken).ConfigureAwait(false);
        return await DescribeAsync(volume, includeRemoteUsage: false, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// ha-update: the leader places (or picks) the replica, the change is committed, a new replica's
    /// node makes it before the answer (else the change is taken back), and the controller (where the
    /// volume is attached) rebuilds it in the background; inspect shows the progress.
    /// </summary>
    public override async Task<V1.Volume> HaUpdate(V1.HaUpdateVolumeRequest request, ServerCallContext context)
    {
        var volume = await operations.ChangeReplicationAsync(request.Volume, (int)Math.Min(request.Repl, int.MaxValue), request.Node, context.CancellationToken).ConfigureAwait(false);
        return await DescribeAsync(volume, includeRemoteUsage: false, context.CancellationToken).ConfigureAwait(false);
    }

    /// <summary>Checks where the volume is attached (its controller sees every write), else here.</summary>
    public override async Task<V1.CheckVolumeResponse> Check(V1.CheckVolumeRequest request, ServerCallContext context)
    {
        var volume = Require(request.Volume);
        var state = runtime.State.Current;
        if (volume.Attachment is { } attachment && attachment.NodeId != runtime.LocalNodeId && state.Nodes.TryGetValue(attachment.NodeId, out var holder))
        {
            if (!runtime.IsAlive(holder.Id))
            {
                throw new SlabException(SlabErrorCode.Unavailable, $"volume '{volume.Name}' is attached on {holder.Name}, which is offline; attach it elsewhere (takeover) or wait for it, then check");
            }

            try
            {
                // As long as the caller waits: a check reads the whole volume.
                return await peers.Internal(holder).CheckReplicasAsync(new V1.CheckReplicasRequest { VolumeId = volume.Id }, new CallOptions(cancellationToken: context.CancellationToken));
            }
            catch (RpcException e)
            {
                throw PeerApi.Translate(e, holder);
            }
        }

        var report = await volumes.CheckReplicasAsync(volume.Id, context.CancellationToken).ConfigureAwait(false);
        if (report.DifferingCount > 0 && runtime.State.Current.FindVolume(volume.Id)?.Attachment is { } now && now.NodeId != runtime.LocalNodeId)
        {
            // Attached elsewhere during the check: its writes may account for the differences.
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' was attached on another node during the check; run it again");
        }

        return ProtoMapping.ToProto(report, runtime.Options.NodeName);
    }

    private VolumeInfo Require(string nameOrId) => operations.Require(nameOrId);

    private Task<V1.LocalReplica> SyncReplicaAsync(VolumeInfo volume, string nodeId, long revision, CancellationToken cancellationToken)
        => operations.SyncReplicaAsync(volume, nodeId, revision, cancellationToken);

    private async Task<V1.Volume> DescribeAsync(VolumeInfo volume, bool includeRemoteUsage, CancellationToken cancellationToken)
    {
        var local = store.FindVolume(volume.Id);
        var used = local is null ? 0 : store.AllocatedBytes(local);
        var formatted = local?.Formatted ?? false;
        if (includeRemoteUsage && local is null
            && (volume.Replicas.FirstOrDefault(r => r.State == ReplicaState.InSync && runtime.IsAlive(r.NodeId)) ?? volume.Replicas.FirstOrDefault()) is { } replica
            && runtime.IsAlive(replica.NodeId))
        {
            try
            {
                var remote = await SyncReplicaAsync(volume, replica.NodeId, 0, cancellationToken).ConfigureAwait(false);
                used = (long)remote.UsedBytes;
                formatted = remote.Formatted;
            }
            catch (SlabException)
            {
                // usage is informational; the rest of the answer stands
            }
        }

        var message = ClusterProtoMapping.ToProto(volume, runtime.State.Current, used, volumes.GetAttachment(volume.Id), runtime.IsAlive, await ResyncOfAsync(volume, cancellationToken).ConfigureAwait(false));
        message.Formatted = formatted;
        return message;
    }

    /// <summary>The resync the volume's controller runs, from this node or the attached one; null when none runs or it cannot be asked.</summary>
    private async Task<V1.ResyncStatusResponse?> ResyncOfAsync(VolumeInfo volume, CancellationToken cancellationToken)
    {
        if (volume.Replicas.All(r => r.State == ReplicaState.InSync) || volume.Attachment is not { } attachment)
        {
            return null;
        }

        if (attachment.NodeId == runtime.LocalNodeId)
        {
            return NodeInternalService.DescribeResync(volumes, volume.Id);
        }

        if (!runtime.State.Current.Nodes.TryGetValue(attachment.NodeId, out var holder) || !runtime.IsAlive(holder.Id))
        {
            return null;
        }

        try
        {
            return await peers.Internal(holder).ResyncStatusAsync(new V1.ResyncStatusRequest { VolumeId = volume.Id }, PeerApi.Call(cancellationToken));
        }
        catch (RpcException)
        {
            return null; // progress is informational; the rest of the answer stands
        }
    }

    private long LocalUsedBytes(string volumeId) => store.FindVolume(volumeId) is { } local ? store.AllocatedBytes(local) : 0;
}

/// <summary>
/// The Snapshots service on a cluster node: crash-consistent snapshots across the in-sync replicas,
/// restores of detached volumes (see <see cref="ClusterVolumeOperations"/>).
/// </summary>
public sealed class ClusterSnapshotsService(ClusterRuntime runtime, ClusterVolumeOperations operations) : V1.Snapshots.SnapshotsBase
{
    public override async Task<V1.Snapshot> Create(V1.CreateSnapshotRequest request, ServerCallContext context)
    {
        var (volume, snapshot) = await operations.CreateSnapshotAsync(request.Volume, request.Name, context.CancellationToken).ConfigureAwait(false);
        return ClusterProtoMapping.ToProto(volume, snapshot, runtime.State.Current);
    }

    public override Task<V1.EnumerateSnapshotsResponse> Enumerate(V1.EnumerateSnapshotsRequest request, ServerCallContext context)
    {
        var (volume, snapshots) = operations.ListSnapshots(request.Volume);
        var state = runtime.State.Current;
        var response = new V1.EnumerateSnapshotsResponse();
        response.Snapshots.Add(snapshots.Select(s => ClusterProtoMapping.ToProto(volume, s, state)));
        return Task.FromResult(response);
    }

    public override async Task<V1.Volume> Restore(V1.RestoreSnapshotRequest request, ServerCallContext context)
    {
        var volume = await operations.RestoreAsync(request.Volume, request.Snapshot, context.CancellationToken).ConfigureAwait(false);
        return ClusterProtoMapping.ToProto(volume, runtime.State.Current, usedBytes: 0, localAttachment: null, runtime.IsAlive);
    }

    public override async Task<V1.CreateGroupSnapshotResponse> CreateGroup(V1.CreateGroupSnapshotRequest request, ServerCallContext context)
    {
        var taken = await operations.CreateGroupSnapshotAsync(request.Volumes, request.Name, context.CancellationToken).ConfigureAwait(false);
        var state = runtime.State.Current;
        var response = new V1.CreateGroupSnapshotResponse();
        response.Snapshots.Add(taken.Select(t => ClusterProtoMapping.ToProto(t.Volume, t.Snapshot, state)));
        return response;
    }

    public override async Task<V1.DeleteSnapshotResponse> Delete(V1.DeleteSnapshotRequest request, ServerCallContext context)
    {
        await operations.DeleteSnapshotAsync(request.Volume, request.Snapshot, context.CancellationToken).ConfigureAwait(false);
        return new V1.DeleteSnapshotResponse();
    }
}
