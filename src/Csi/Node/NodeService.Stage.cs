using Csi.V1;
using Grpc.Core;
using Slab.Csi.Slabd;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Node;

internal sealed partial class NodeService
{
    /// <summary>
    /// Attaches the volume on this node through slabd; a mount volume is also formatted on first use
    /// and mounted at the staging path with the capability's mount flags. slabd refuses (FAILED_PRECONDITION)
    /// while another live node holds the volume, and takes it over by epoch fencing when that node is dead.
    /// </summary>
    public override async Task<NodeStageVolumeResponse> NodeStageVolume(NodeStageVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var staging = RequirePath(request.StagingTargetPath, "staging_target_path");
        var capability = request.VolumeCapability ?? throw CsiException.Missing("volume_capability");
        if (VolumeCapabilities.Unsupported(capability) is { } why)
            throw CsiException.FailedPrecondition(why);
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var fs = string.IsNullOrEmpty(volume.Spec?.Fs) ? "ext4" : volume.Spec.Fs;
        var local = await LocalNodeAsync(context).ConfigureAwait(false);
        var staged = HostMounts.At(staging);

        if (VolumeCapabilities.IsBlock(capability))
        {
            if (staged is not null)
                throw CsiException.AlreadyExists($"volume {volume.Id} is staged at {staging} with a filesystem; it cannot be staged there as a block device too");
            var attached = await slabd.MountAttach.AttachAsync(new V1.AttachRequest { Volume = volume.Id }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
            LogStaged(logger, volume.Id, staging, attached.DevicePath);
            return new NodeStageVolumeResponse();
        }

        if (fs == "none")
            throw CsiException.FailedPrecondition($"volume {volume.Id} has no filesystem (fs none); stage it with the block access type");
        if (capability.Mount.FsType is { Length: > 0 } wanted && wanted != fs)
            throw CsiException.FailedPrecondition($"volume {volume.Id} has {fs}, not {wanted}");
        if (staged is not null && LocalAttachment(volume, local.Id) is { } attachment && attachment.MountPaths.Contains(staging))
            return new NodeStageVolumeResponse(); // staged already
        if (staged is not null)
            throw CsiException.AlreadyExists($"{staging} is already a mount point of {staged.Source}, not of volume {volume.Id}");

        var mount = new V1.MountRequest { Volume = volume.Id, Path = staging };
        mount.Options.Add(capability.Mount.MountFlags.SelectMany(f => f.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
        var mounted = await slabd.MountAttach.MountAsync(mount, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
        LogStaged(logger, volume.Id, staging, mounted.DevicePath);
        return new NodeStageVolumeResponse();
    }

    /// <summary>Unmounts the staging path (mount volumes) and detaches the volume from this node; a no-op for what is undone already.</summary>
    public override async Task<NodeUnstageVolumeResponse> NodeUnstageVolume(NodeUnstageVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var staging = RequirePath(request.StagingTargetPath, "staging_target_path");
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var local = await LocalNodeAsync(context).ConfigureAwait(false);
        var attachment = LocalAttachment(volume, local.Id);
        if (attachment is not null && attachment.MountPaths.Contains(staging))
        {
            await slabd.MountAttach.UnmountAsync(new V1.UnmountRequest { Volume = volume.Id, Path = staging }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
            attachment = LocalAttachment(await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false), local.Id);
        }

        if (attachment is not null)
        {
            if (attachment.MountPaths.Count > 0)
            {
                throw CsiException.FailedPrecondition(
                    $"volume {volume.Id} is still mounted at {string.Join(", ", attachment.MountPaths)} on this node (not by slab-csi); unmount it there first");
            }

            try
            {
                await slabd.MountAttach.DetachAsync(new V1.DetachRequest { Volume = volume.Id }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.FailedPrecondition)
            {
                // Fine when it was detached meanwhile (a concurrent unstage, or another node took it over).
                if (LocalAttachment(await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false), local.Id) is not null)
                    throw;
            }
        }

        LogUnstaged(logger, volume.Id, staging);
        return new NodeUnstageVolumeResponse();
    }
}
