using Grpc.Core;
using Slab.Common;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api;

/// <summary>The Node service: node status with pools, capacity and alerts.</summary>
public sealed class NodeService(VolumeManager volumes, Store.IVolumeStore store, LocalNodeIdentity node, AlertClock clock, IServiceProvider services) : V1.Node.NodeBase
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
        var options = store.Options;
        // The pool alert is dated from when its condition (near full, or full) began.
        var poolAlert = pool.UsedFraction >= options.FullFraction ? $"pool {pool.Id} full"
            : pool.UsedFraction >= options.NearFullFraction ? $"pool {pool.Id} near full" : null;
        foreach (var condition in (string[])[$"pool {pool.Id} full", $"pool {pool.Id} near full"])
        {
            if (condition != poolAlert)
            {
                clock.Inactive(condition);
            }
        }

        if (poolAlert is not null)
        {
            var full = pool.UsedFraction >= options.FullFraction;
            response.Alerts.Add(new V1.Alert
            {
                Severity = full ? "critical" : "warning",
                Resource = $"pool {pool.Id}",
                Message = full
                    ? $"pool is {pool.UsedFraction:P0} full ({Sizes.Human(pool.UsedBytes)} of {Sizes.Human(pool.TotalBytes)}): new volumes, clones and grows are refused; free space or add a drive"
                    : $"pool is {pool.UsedFraction:P0} full ({Sizes.Human(pool.UsedBytes)} of {Sizes.Human(pool.TotalBytes)}); at {options.FullFraction:P0} new allocations will be refused",
                RaisedUnixMs = clock.ActiveSince(poolAlert).ToUnixTimeMilliseconds(),
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

        AddReplicaAlerts(response, runtime, state);
        if (!response.HasQuorum)
        {
            response.Alerts.Add(new V1.Alert
            {
                Severity = "critical",
                Resource = "kvdb",
                Message = "no quorum: this node sees no KVDB leader with a majority; cluster changes are refused until a majority of KVDB members is reachable",
            });
        }
    }

    /// <summary>
    /// One alert per replica that does not count for its volume's writes (out, catching up,
    /// rebuilding) or sits on a node that is offline, dated from when its state changed: a warning
    /// while the volume has another in-sync replica on an online node, critical when it has none.
    /// And one per snapshot that no replica holds any more (undated: the state does not record when
    /// its last holder left).
    /// </summary>
    private static void AddReplicaAlerts(V1.StatusResponse response, Slab.Cluster.Node.ClusterRuntime runtime, Slab.Cluster.State.ClusterState state)
    {
        foreach (var volume in state.Volumes.Values)
        {
            var usable = volume.Replicas.Count(r => r.State == Slab.Cluster.State.ReplicaState.InSync && runtime.IsAlive(r.NodeId));
            foreach (var replica in volume.Replicas)
            {
                var online = runtime.IsAlive(replica.NodeId);
                if (replica.State == Slab.Cluster.State.ReplicaState.InSync && online)
                {
                    continue;
                }

                var node = state.Nodes.TryGetValue(replica.NodeId, out var info) ? info.Name : replica.NodeId;
                var what = replica.State switch
                {
                    Slab.Cluster.State.ReplicaState.Out => "is faulted (out of the in-sync set)",
                    Slab.Cluster.State.ReplicaState.CatchingUp => "is catching up (resync)",
                    Slab.Cluster.State.ReplicaState.Rebuilding => "is being rebuilt",
                    _ => "is in sync",
                };
                var where = online ? "" : $"; node {node} is offline";
                response.Alerts.Add(new V1.Alert
                {
                    Severity = usable == 0 ? "critical" : "warning",
                    Resource = $"volume {volume.Name}",
                    Message = usable == 0
                        ? $"replica on {node} {what}{where}; the volume has no in-sync replica on an online node: its I/O waits for one to return"
                        : $"replica on {node} {what}{where}; writes go on on {usable} in-sync replica(s)",
                    RaisedUnixMs = replica.StateSince == default ? 0 : replica.StateSince.ToUnixTimeMilliseconds(),
                });
            }

            foreach (var snapshot in volume.Snapshots)
            {
                if (!snapshot.Pending && !snapshot.HoldingReplicas(volume).Any())
                {
                    // Its copies went with replicas that were replaced or rebuilt since it was taken.
                    response.Alerts.Add(new V1.Alert
                    {
                        Severity = "warning",
                        Resource = $"snapshot {volume.Name}@{snapshot.Name}",
                        Message = "no replica holds this snapshot any more (the replicas it was taken on were replaced or removed): it cannot be restored or cloned; delete it",
                    });
                }
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
