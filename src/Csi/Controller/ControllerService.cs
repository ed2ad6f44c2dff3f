using Csi.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Slab.Csi.Slabd;
using Cap = global::Csi.V1.ControllerServiceCapability.Types.RPC.Types.Type;

namespace Slab.Csi.Controller;

/// <summary>
/// CSI Controller over slabd's public API (any node's: volumes are cluster records). Every call is
/// idempotent by name or id, as the spec requires: a repeat returns what the first call made.
/// Split by concern: volumes (create, delete, validate, list, get, expand, modify), snapshots,
/// capacity and topology.
/// </summary>
internal sealed partial class ControllerService(SlabdApi slabd, ILogger<ControllerService> logger) : global::Csi.V1.Controller.ControllerBase
{
    private static readonly Cap[] s_capabilities =
    [
        Cap.CreateDeleteVolume, Cap.CreateDeleteSnapshot, Cap.ListVolumes, Cap.ListSnapshots, Cap.GetCapacity,
        Cap.CloneVolume, Cap.ExpandVolume, Cap.GetVolume, Cap.VolumeCondition, Cap.ModifyVolume, Cap.SingleNodeMultiWriter,
    ];

    public override Task<ControllerGetCapabilitiesResponse> ControllerGetCapabilities(ControllerGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new ControllerGetCapabilitiesResponse();
        foreach (var type in s_capabilities)
        {
            response.Capabilities.Add(new ControllerServiceCapability { Rpc = new ControllerServiceCapability.Types.RPC { Type = type } });
        }

        return Task.FromResult(response);
    }

    public override Task<ControllerPublishVolumeResponse> ControllerPublishVolume(ControllerPublishVolumeRequest request, ServerCallContext context) =>
        throw new CsiException(StatusCode.Unimplemented, "slab-csi has no ControllerPublishVolume: NodeStageVolume attaches the volume on its node (the CSIDriver sets attachRequired: false)");

    public override Task<ControllerUnpublishVolumeResponse> ControllerUnpublishVolume(ControllerUnpublishVolumeRequest request, ServerCallContext context) =>
        throw new CsiException(StatusCode.Unimplemented, "slab-csi has no ControllerUnpublishVolume: NodeUnstageVolume detaches the volume on its node");

    [LoggerMessage(Level = LogLevel.Information, Message = "Created volume {Name} ({VolumeId}), {SizeBytes} bytes, repl {Repl}{Source}")]
    private static partial void LogCreated(ILogger logger, string name, string volumeId, long sizeBytes, uint repl, string source);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted volume {VolumeId}")]
    private static partial void LogDeleted(ILogger logger, string volumeId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Created snapshot {Name} of volume {VolumeId}: {SnapshotId}")]
    private static partial void LogSnapshotCreated(ILogger logger, string name, string volumeId, string snapshotId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Expanded volume {VolumeId} to {SizeBytes} bytes")]
    private static partial void LogExpanded(ILogger logger, string volumeId, long sizeBytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {VolumeId}: replicas {From} -> {To}")]
    private static partial void LogReplChanged(ILogger logger, string volumeId, uint from, uint to);
}
