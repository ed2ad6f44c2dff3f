using Grpc.Core;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api;

/// <summary>The Volumes service: create, inspect, enumerate, update, delete, clone.</summary>
public sealed class VolumesService(VolumeManager volumes, LocalNodeIdentity node, TimeProvider time) : V1.Volumes.VolumesBase
{
    public override async Task<V1.Volume> Create(V1.CreateVolumeRequest request, ServerCallContext context)
    {
        var spec = request.Spec ?? new V1.VolumeSpec();
        foreach (var placement in spec.Nodes)
        {
            // A flag that cannot be honoured is refused, never ignored: here every replica is on this node.
            if (!string.Equals(placement, node.NodeName, StringComparison.OrdinalIgnoreCase) && !string.Equals(placement, node.NodeId, StringComparison.OrdinalIgnoreCase))
            {
                throw new Common.SlabException(
                    Common.SlabErrorCode.InvalidArgument,
                    $"--nodes {placement}: this slabd runs without a cluster, so the volume can only be placed on this node ({node.NodeName}); start slabd with --cluster-id to place volumes on other nodes");
            }
        }

        if (spec.Zones.Count > 0 || spec.Racks.Count > 0)
        {
            throw new Common.SlabException(
                Common.SlabErrorCode.InvalidArgument,
                "--zones and --racks place replicas across a cluster's nodes; this slabd runs without a cluster (start it with --cluster-id)");
        }

        var view = await volumes.CreateAsync(
            request.Name,
            new VolumeSpecification(spec.SizeBytes, spec.Repl, spec.Fs, ProtoMapping.FromProto(spec.IoPriority), spec.Labels, ProtoMapping.FromProto(spec.Limits)),
            context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(view, node);
    }

    public override Task<V1.Volume> Inspect(V1.InspectVolumeRequest request, ServerCallContext context)
        => Task.FromResult(ProtoMapping.ToProto(volumes.Inspect(request.Volume), node));

    public override Task<V1.EnumerateVolumesResponse> Enumerate(V1.EnumerateVolumesRequest request, ServerCallContext context)
    {
        var response = new V1.EnumerateVolumesResponse();
        foreach (var view in volumes.List(request.Labels.Count > 0 ? request.Labels : null))
        {
            response.Volumes.Add(ProtoMapping.ToProto(view, node));
        }

        return Task.FromResult(response);
    }

    public override async Task<V1.Volume> Update(V1.UpdateVolumeRequest request, ServerCallContext context)
    {
        long? size = request.HasSizeBytes ? (long)Math.Min(request.SizeBytes, long.MaxValue) : null;
        if (request.HasSizeBytes && request.SizeBytes == 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "volume size must be greater than 0"));
        }

        var limits = request.Limits is null ? null : ProtoMapping.FromProto(request.Limits, volumes.Inspect(request.Volume).Record.Limits);
        var view = await volumes.UpdateAsync(request.Volume, size, request.Labels, limits, context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(view, node);
    }

    public override Task<V1.VolumeStats> Stats(V1.VolumeStatsRequest request, ServerCallContext context)
    {
        var view = volumes.Inspect(request.Volume);
        var record = view.Record;
        return Task.FromResult(ProtoMapping.ToProto(
            record.Id, record.Name, volumes.ControllerOf(record.Id), node.NodeId, node.NodeName, record.Limits, view.UsedBytes, time.GetUtcNow()));
    }

    public override async Task<V1.DeleteVolumeResponse> Delete(V1.DeleteVolumeRequest request, ServerCallContext context)
    {
        await volumes.DeleteAsync(request.Volume, context.CancellationToken).ConfigureAwait(false);
        return new V1.DeleteVolumeResponse();
    }

    public override async Task<V1.Volume> Clone(V1.CloneVolumeRequest request, ServerCallContext context)
    {
        var view = await volumes.CloneAsync(request.Source, request.Name, request.Labels, context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(view, node);
    }

    public override Task<V1.Volume> HaUpdate(V1.HaUpdateVolumeRequest request, ServerCallContext context)
    {
        volumes.Inspect(request.Volume); // an unknown volume is reported as such first
        throw new Common.SlabException(
            Common.SlabErrorCode.FailedPrecondition,
            "ha-update needs a cluster: a volume on a node started without --cluster-id has exactly one replica; start slabd with --cluster-id to replicate volumes");
    }

    public override async Task<V1.CheckVolumeResponse> Check(V1.CheckVolumeRequest request, ServerCallContext context)
    {
        var report = await volumes.CheckReplicasAsync(request.Volume, context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(report, node.NodeName);
    }
}

/// <summary>The Snapshots service.</summary>
public sealed class SnapshotsService(VolumeManager volumes, LocalNodeIdentity node) : V1.Snapshots.SnapshotsBase
{
    public override async Task<V1.Snapshot> Create(V1.CreateSnapshotRequest request, ServerCallContext context)
    {
        var (volume, snapshot) = await volumes.CreateSnapshotAsync(request.Volume, request.Name, context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(volume, snapshot);
    }

    public override Task<V1.EnumerateSnapshotsResponse> Enumerate(V1.EnumerateSnapshotsRequest request, ServerCallContext context)
    {
        var volume = volumes.Require(request.Volume);
        var response = new V1.EnumerateSnapshotsResponse();
        foreach (var snapshot in volume.Snapshots)
        {
            response.Snapshots.Add(ProtoMapping.ToProto(volume, snapshot));
        }

        return Task.FromResult(response);
    }

    public override async Task<V1.CreateGroupSnapshotResponse> CreateGroup(V1.CreateGroupSnapshotRequest request, ServerCallContext context)
    {
        var taken = await volumes.CreateGroupSnapshotAsync(request.Volumes, request.Name, context.CancellationToken).ConfigureAwait(false);
        var response = new V1.CreateGroupSnapshotResponse();
        response.Snapshots.Add(taken.Select(t => ProtoMapping.ToProto(t.Volume, t.Snapshot)));
        return response;
    }

    public override async Task<V1.Volume> Restore(V1.RestoreSnapshotRequest request, ServerCallContext context)
    {
        var view = await volumes.RestoreAsync(request.Volume, request.Snapshot, context.CancellationToken).ConfigureAwait(false);
        return ProtoMapping.ToProto(view, node);
    }

    public override async Task<V1.DeleteSnapshotResponse> Delete(V1.DeleteSnapshotRequest request, ServerCallContext context)
    {
        await volumes.DeleteSnapshotAsync(request.Volume, request.Snapshot, context.CancellationToken).ConfigureAwait(false);
        return new V1.DeleteSnapshotResponse();
    }
}

/// <summary>The MountAttach service: attach, detach, mount, unmount on this host.</summary>
public sealed class MountAttachService(VolumeManager volumes) : V1.MountAttach.MountAttachBase
{
    public override async Task<V1.AttachResponse> Attach(V1.AttachRequest request, ServerCallContext context)
    {
        var attachment = await volumes.AttachAsync(request.Volume, context.CancellationToken).ConfigureAwait(false);
        return new V1.AttachResponse { DevicePath = attachment.DevicePath, Attachment = ProtoMapping.ToProto(attachment) };
    }

    public override async Task<V1.DetachResponse> Detach(V1.DetachRequest request, ServerCallContext context)
    {
        await volumes.DetachAsync(request.Volume, context.CancellationToken).ConfigureAwait(false);
        return new V1.DetachResponse();
    }

    public override async Task<V1.MountResponse> Mount(V1.MountRequest request, ServerCallContext context)
    {
        var (device, fs) = await volumes.MountAsync(request.Volume, request.Path, request.Options, context.CancellationToken).ConfigureAwait(false);
        return new V1.MountResponse { DevicePath = device, Path = request.Path, Fs = fs };
    }

    public override async Task<V1.UnmountResponse> Unmount(V1.UnmountRequest request, ServerCallContext context)
    {
        await volumes.UnmountAsync(request.Volume, request.Path, context.CancellationToken).ConfigureAwait(false);
        return new V1.UnmountResponse();
    }
}

/// <summary>The Identity service.</summary>
public sealed class IdentityService(LocalNodeIdentity node) : V1.Identity.IdentityBase
{
    public const uint ApiVersion = 1;

    public override Task<V1.VersionResponse> Version(V1.VersionRequest request, ServerCallContext context)
        => Task.FromResult(new V1.VersionResponse { Version = node.Version, ApiVersion = ApiVersion });
}
