using Csi.V1;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Slab.Csi.Slabd;
using Cap = Csi.V1.NodeServiceCapability.Types.RPC.Types.Type;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Node;

/// <summary>
/// CSI Node over the local slabd: stage attaches (and for mount volumes formats on first use and
/// mounts at the staging path, all done by slabd), publish bind-mounts into the pod, unpublish and
/// unstage undo it. slab-csi keeps no state of its own: what is staged or published is read from
/// slabd and the mount table, so every call is idempotent also across restarts of slab-csi.
/// Split by concern: staging, publishing, stats and expansion.
/// </summary>
internal sealed partial class NodeService(CsiOptions options, SlabdApi slabd, ILogger<NodeService> logger) : global::Csi.V1.Node.NodeBase
{
    private static readonly Cap[] s_capabilities =
        [Cap.StageUnstageVolume, Cap.ExpandVolume, Cap.GetVolumeStats, Cap.VolumeCondition, Cap.SingleNodeMultiWriter];

    public override Task<NodeGetCapabilitiesResponse> NodeGetCapabilities(NodeGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new NodeGetCapabilitiesResponse();
        foreach (var type in s_capabilities)
        {
            response.Capabilities.Add(new NodeServiceCapability { Rpc = new NodeServiceCapability.Types.RPC { Type = type } });
        }

        return Task.FromResult(response);
    }

    public override async Task<NodeGetInfoResponse> NodeGetInfo(NodeGetInfoRequest request, ServerCallContext context)
    {
        var local = await LocalNodeAsync(context).ConfigureAwait(false);
        var topology = new global::Csi.V1.Topology();
        topology.Segments.Add(Topology.SegmentOf(local.Name, local.Zone, local.Rack));
        return new NodeGetInfoResponse
        {
            NodeId = options.NodeId ?? local.Name,
            MaxVolumesPerNode = options.MaxVolumesPerNode,
            AccessibleTopology = topology,
        };
    }

    /// <summary>This node as slabd knows it: id, name and (in a cluster) zone and rack.</summary>
    private async Task<(string Id, string Name, string Zone, string Rack)> LocalNodeAsync(ServerCallContext context)
    {
        var status = await slabd.Node.StatusAsync(new V1.StatusRequest(), SlabdApi.Options(context)).ConfigureAwait(false);
        if (!status.Clustered)
            return (status.NodeId, status.NodeName, "", "");
        var node = await slabd.Cluster.InspectNodeAsync(new V1.InspectNodeRequest { Node = status.NodeId }, SlabdApi.Options(context)).ConfigureAwait(false);
        return (status.NodeId, status.NodeName, node.Zone, node.Rack);
    }

    /// <summary>The volume's attachment when it is on this node, else null.</summary>
    private static V1.Attachment? LocalAttachment(V1.Volume volume, string localNodeId) =>
        volume.Attachment is { } a && a.NodeId == localNodeId && a.DevicePath.Length > 0 ? a : null;

    private static string RequirePath(string path, string field)
    {
        if (path.Length == 0)
            throw CsiException.Missing(field);
        if (!path.StartsWith('/'))
            throw CsiException.InvalidArgument($"{field} '{path}' must be an absolute path");
        return path.Length > 1 ? path.TrimEnd('/') : path;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Staged volume {VolumeId} at {Path} ({Device})")]
    private static partial void LogStaged(ILogger logger, string volumeId, string path, string device);

    [LoggerMessage(Level = LogLevel.Information, Message = "Unstaged volume {VolumeId} from {Path}")]
    private static partial void LogUnstaged(ILogger logger, string volumeId, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Published volume {VolumeId} at {Path}{ReadOnly}")]
    private static partial void LogPublished(ILogger logger, string volumeId, string path, string readOnly);

    [LoggerMessage(Level = LogLevel.Information, Message = "Unpublished volume {VolumeId} from {Path}")]
    private static partial void LogUnpublished(ILogger logger, string volumeId, string path);
}
