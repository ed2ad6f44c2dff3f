using Grpc.Core;
using Slab.Common;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api;

/// <summary>The Node service: node status with pools, capacity and alerts (<see cref="Slab.Cluster.Node.NodeAlerts"/> computes them).</summary>
public sealed class NodeService(VolumeManager volumes, Store.IVolumeStore store, LocalNodeIdentity node, Slab.Cluster.Node.NodeAlerts alerts, IServiceProvider services) : V1.Node.NodeBase
{
    public override Task<V1.StatusResponse> Status(V1.StatusRequest request, ServerCallContext context)
    {
        var pool = store.GetPoolStatus();
        var all = volumes.List();
        var response = new V1.StatusResponse
        {
            NodeId = node.NodeId,
            NodeName = node.NodeName,
            Status = "online",
            ClusterId = node.ClusterId,
            Version = node.Version,
            NodesOnline = 1,
            NodesTotal = 1,
            TotalBytes = (ulong)pool.TotalBytes,
            UsedBytes = (ulong)pool.UsedBytes,
            ProvisionedBytes = (ulong)pool.ProvisionedBytes,
            VolumeCount = (uint)all.Count,
            AttachedCount = (uint)all.Count(v => v.Attachment is not null),
            NbdSocket = node.NbdSocket,
            NbdTcp = node.NbdTcp,
        };
        response.Pools.Add(ProtoMapping.ToProto(pool));
        foreach (var alert in alerts.Current(pool))
        {
            response.Alerts.Add(new V1.Alert
            {
                Severity = alert.SeverityLabel,
                Resource = alert.Resource,
                Message = alert.Message,
                RaisedUnixMs = alert.RaisedAt?.ToUnixTimeMilliseconds() ?? 0,
            });
        }

        if (services.GetService(typeof(Slab.Cluster.Node.ClusterRuntime)) is Slab.Cluster.Node.ClusterRuntime runtime)
        {
            AddClusterStatus(response, runtime);
        }

        return Task.FromResult(response);
    }

    private static void AddClusterStatus(V1.StatusResponse response, Slab.Cluster.Node.ClusterRuntime runtime)
    {
        var state = runtime.State.Current;
        var leaderId = runtime.State.LeaderId;
        var leader = Cluster.ClusterProtoMapping.LeaderNode(state, leaderId);
        response.Clustered = true;
        response.ClusterId = runtime.Options.ClusterId;
        response.HasQuorum = runtime.State.HasQuorum;
        response.LeaderNodeId = leader?.Id ?? "";
        response.LeaderNodeName = leader?.Name ?? leaderId ?? "";
        response.NodesTotal = (uint)state.Nodes.Count;
        response.NodesOnline = (uint)state.Nodes.Values.Count(n => runtime.StatusOf(n) == "online");
        response.VolumeCount = (uint)state.Volumes.Count;
        response.AttachedCount = (uint)state.Volumes.Values.Count(v => v.Attachment is not null);
        response.KvdbMembers.Add(runtime.State.Members.Select(m => Cluster.ClusterProtoMapping.ToProto(m, runtime)));
        if (state.Nodes.TryGetValue(runtime.LocalNodeId, out var self) && runtime.StatusOf(self) is var status && status != "online")
        {
            response.Status = status;
        }

        foreach (var other in state.Nodes.Values)
        {
            if (runtime.StatusOf(other) == "online" && runtime.StatsOf(other.Id) is { } stats)
            {
                response.ClusterTotalBytes += (ulong)stats.TotalBytes;
                response.ClusterUsedBytes += (ulong)stats.UsedBytes;
            }
        }
    }

    public override Task<V1.PoolsResponse> Pools(V1.PoolsRequest request, ServerCallContext context)
    {
        var response = new V1.PoolsResponse();
        response.Pools.Add(ProtoMapping.ToProto(store.GetPoolStatus()));
        return Task.FromResult(response);
    }
}
