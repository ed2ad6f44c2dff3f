using Csi.V1;
using Grpc.Core;
using Slab.Host;
using Slab.Csi.Controller;

namespace Slab.Csi.Node;

internal sealed partial class NodeService
{
    /// <summary>Bytes and inodes of a mounted volume, or the size of a block volume, and its condition from slabd.</summary>
    public override async Task<NodeGetVolumeStatsResponse> NodeGetVolumeStats(NodeGetVolumeStatsRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var path = RequirePath(request.VolumePath, "volume_path");
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var mount = HostMounts.At(path) ?? throw CsiException.NotFound($"volume {volume.Id} is not mounted at {path}");
        var response = new NodeGetVolumeStatsResponse { VolumeCondition = ControllerService.ConditionOf(volume) };
        if (HostMounts.BoundDevice(mount) is { } device)
        {
            // A published block device: its size is all there is to say.
            response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Bytes, Total = BlockSysfs.SizeBytes(device) ?? (long)volume.Spec.SizeBytes });
            return response;
        }

        var usage = HostMounts.Usage(path);
        response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Bytes, Total = usage.Total, Available = usage.Available, Used = usage.Used });
        response.Usage.Add(new VolumeUsage { Unit = VolumeUsage.Types.Unit.Inodes, Total = usage.Inodes, Available = usage.InodesFree, Used = usage.InodesUsed });
        return response;
    }

    /// <summary>
    /// Grows the filesystem at the volume path to the volume's size (slabd has grown the device in
    /// ControllerExpandVolume; it also grows mounted filesystems itself, so this is often a no-op).
    /// Block volumes need nothing. Returns the device's size.
    /// </summary>
    public override async Task<NodeExpandVolumeResponse> NodeExpandVolume(NodeExpandVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var path = RequirePath(request.VolumePath, "volume_path");
        if (request.VolumeCapability is { } capability && VolumeCapabilities.Unsupported(capability) is { } why)
            throw CsiException.InvalidArgument(why);
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var size = (long)volume.Spec.SizeBytes;
        if (request.CapacityRange is { RequiredBytes: > 0 } range && range.RequiredBytes > size)
            throw CsiException.OutOfRange($"volume {volume.Id} is {size} bytes; expand it (ControllerExpandVolume) to {range.RequiredBytes} first");
        var mount = HostMounts.At(path) ?? throw CsiException.NotFound($"volume {volume.Id} is not mounted at {path}");
        if (HostMounts.BoundDevice(mount) is { } device)
            return new NodeExpandVolumeResponse { CapacityBytes = BlockSysfs.SizeBytes(device) ?? size }; // a raw device has nothing to grow
        await HostMounts.GrowAsync(mount, context.CancellationToken).ConfigureAwait(false);
        return new NodeExpandVolumeResponse { CapacityBytes = BlockSysfs.SizeBytes(mount.Source) ?? size };
    }
}
