using Csi.V1;
using Grpc.Core;
using Slab.Host;

namespace Slab.Csi.Node;

internal sealed partial class NodeService
{
    /// <summary>
    /// Bind-mounts the staged filesystem (mount) or the attached device node (block) at the target
    /// path, read-only when asked. A repeat with the same volume at the target is a no-op; another
    /// mount there is ALREADY_EXISTS.
    /// </summary>
    public override async Task<NodePublishVolumeResponse> NodePublishVolume(NodePublishVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var target = RequirePath(request.TargetPath, "target_path");
        var capability = request.VolumeCapability ?? throw CsiException.Missing("volume_capability");
        if (request.StagingTargetPath.Length == 0)
            throw CsiException.FailedPrecondition("staging_target_path is required: slab-csi stages volumes (NodeStageVolume) before publishing them");
        var staging = RequirePath(request.StagingTargetPath, "staging_target_path");
        if (VolumeCapabilities.Unsupported(capability) is { } why)
            throw CsiException.FailedPrecondition(why);
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var local = await LocalNodeAsync(context).ConfigureAwait(false);
        var attachment = LocalAttachment(volume, local.Id)
            ?? throw CsiException.FailedPrecondition($"volume {volume.Id} is not staged on this node; NodeStageVolume first");
        var readOnly = request.Readonly || VolumeCapabilities.IsReadOnlyMode(capability);

        string source;
        Func<Common.MountEntry, bool> isThisVolume;
        if (VolumeCapabilities.IsBlock(capability))
        {
            source = attachment.DevicePath;
            if (BlockSysfs.DeviceNumber(source) is null)
                throw CsiException.FailedPrecondition($"the device {source} of volume {volume.Id} is gone; unstage and stage it again");
            isThisVolume = m => HostMounts.BoundDevice(m) == source;
        }
        else
        {
            var stagedMount = attachment.MountPaths.Contains(staging) ? HostMounts.At(staging) : null;
            if (stagedMount is null)
                throw CsiException.FailedPrecondition($"volume {volume.Id} is not staged at {staging}; NodeStageVolume first");
            source = staging;
            isThisVolume = m => (m.Major, m.Minor) == (stagedMount.Major, stagedMount.Minor);
        }

        if (HostMounts.At(target) is { } existing)
        {
            if (isThisVolume(existing))
                return new NodePublishVolumeResponse();
            throw CsiException.AlreadyExists($"{target} is already a mount point of {existing.Source}, not of volume {volume.Id}");
        }

        if (VolumeCapabilities.IsBlock(capability))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            if (Directory.Exists(target))
                Directory.Delete(target); // the CO may make a directory; a device bind needs a file
            if (!File.Exists(target))
                await File.WriteAllBytesAsync(target, [], context.CancellationToken).ConfigureAwait(false);
        }
        else
        {
            Directory.CreateDirectory(target);
        }

        await HostMounts.BindAsync(source, target, readOnly, context.CancellationToken).ConfigureAwait(false);
        LogPublished(logger, volume.Id, target, readOnly ? " read-only" : "");
        return new NodePublishVolumeResponse();
    }

    /// <summary>Unmounts the target path and removes it; a no-op when it is gone already.</summary>
    public override async Task<NodeUnpublishVolumeResponse> NodeUnpublishVolume(NodeUnpublishVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var target = RequirePath(request.TargetPath, "target_path");
        _ = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        await HostMounts.UnmountAsync(target, context.CancellationToken).ConfigureAwait(false);
        if (Directory.Exists(target))
            Directory.Delete(target);
        else if (File.Exists(target))
            File.Delete(target);
        LogUnpublished(logger, request.VolumeId, target);
        return new NodeUnpublishVolumeResponse();
    }
}
