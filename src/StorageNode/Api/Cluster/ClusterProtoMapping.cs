using Slab.Cluster.Node;
using Slab.Cluster.State;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;


/// <summary>Cluster-state records to API messages.</summary>
internal static class ClusterProtoMapping
{
    /// <summary>
    /// A cluster volume as the API shows it. Its state comes from the replica modes and node
    /// liveness: "up" when every replica is in sync on a node that is online, "degraded" when at least
    /// one in-sync replica is on an online node but not all replicas are, "down" when none is.
    /// </summary>
    /// <param name="resync">The resync the volume's controller runs, when the answering node knows it; shown on its replica.</param>
    public static V1.Volume ToProto(VolumeInfo volume, ClusterState state, long usedBytes, Volumes.AttachmentInfo? localAttachment, Func<string, bool> isAlive, V1.ResyncStatusResponse? resync = null)
    {
        var message = new V1.Volume
        {
            Id = volume.Id,
            Name = volume.Name,
            Spec = new V1.VolumeSpec
            {
                SizeBytes = (ulong)volume.Spec.SizeBytes,
                Repl = (uint)volume.Spec.Repl,
                Fs = volume.Spec.Fs,
                IoPriority = ProtoMapping.ToProto(volume.Spec.IoPriority),
                Limits = ProtoMapping.ToProto(volume.Spec.Limits),
            },
            State = VolumeStateOf(volume, isAlive),
            UsedBytes = (ulong)usedBytes,
            CreatedUnixMs = volume.Created.ToUnixTimeMilliseconds(),
            Epoch = (ulong)volume.Epoch,
            SnapshotCount = (uint)volume.Snapshots.Count(s => !s.Pending),
            Source = volume.Origin?.Reference ?? "",
        };
        message.Spec.Labels.Add(volume.Spec.Labels);
        if (!volume.Spec.Nodes.IsDefaultOrEmpty)
        {
            message.Spec.Nodes.Add(volume.Spec.Nodes);
        }

        if (!volume.Spec.Zones.IsDefaultOrEmpty)
        {
            message.Spec.Zones.Add(volume.Spec.Zones);
        }

        if (!volume.Spec.Racks.IsDefaultOrEmpty)
        {
            message.Spec.Racks.Add(volume.Spec.Racks);
        }

        foreach (var replica in volume.Replicas)
        {
            message.Replicas.Add(new V1.Replica
            {
                NodeId = replica.NodeId,
                NodeName = NameOf(state, replica.NodeId),
                PoolId = replica.PoolId,
                State = replica.State switch
                {
                    ReplicaState.InSync => "in-sync",
                    ReplicaState.CatchingUp => "catching-up",
                    ReplicaState.Rebuilding => "rebuilding",
                    _ => "faulted",
                },
                NodeOnline = isAlive(replica.NodeId),
                Progress = resync?.NodeId == replica.NodeId && replica.State != ReplicaState.InSync ? resync.Progress : null,
                Replaces = replica.Replaces.Length > 0 ? NameOf(state, replica.Replaces) : "",
            });
        }

        if (localAttachment is not null && volume.Attachment?.NodeId == localAttachment.NodeId)
        {
            message.Attachment = ProtoMapping.ToProto(localAttachment);
        }
        else if (volume.Attachment is { } attachment)
        {
            message.Attachment = new V1.Attachment
            {
                NodeId = attachment.NodeId,
                NodeName = NameOf(state, attachment.NodeId),
                DevicePath = attachment.Device,
                AttachedUnixMs = attachment.Since.ToUnixTimeMilliseconds(),
                Method = attachment.Purpose switch
                {
                    AttachPurpose.Resync => "resync",
                    AttachPurpose.Snapshot => "snapshot",
                    AttachPurpose.Restore => "restore",
                    _ => "",
                },
            };
        }

        return message;
    }

    /// <summary>A committed snapshot of a cluster volume, with the nodes whose replicas hold it.</summary>
    public static V1.Snapshot ToProto(VolumeInfo volume, SnapshotInfo snapshot, ClusterState state)
    {
        var message = ProtoMapping.Snapshot(snapshot.Id, snapshot.Name, volume.Id, volume.Name, snapshot.SizeBytes, snapshot.Created);
        message.Nodes.Add(snapshot.HoldingReplicas(volume).Select(r => NameOf(state, r.NodeId)));
        return message;
    }

    private static string VolumeStateOf(VolumeInfo volume, Func<string, bool> isAlive) => volume.HealthOf(isAlive) switch
    {
        VolumeHealth.Up => "up",
        VolumeHealth.Degraded => "degraded",
        _ => "down",
    };

    public static V1.ClusterNode ToProto(NodeInfo node, ClusterRuntime runtime, string? leaderMemberId)
    {
        var endpoints = NodeEndpoints.From(node.Addresses);
        var stats = runtime.StatsOf(node.Id);
        var state = runtime.State.Current;
        var member = runtime.Liveness.Find(node.Id);
        var message = new V1.ClusterNode
        {
            Id = node.Id,
            Name = node.Name,
            ApiEndpoint = endpoints.Api,
            DataEndpoint = endpoints.Replication,
            RaftEndpoint = endpoints.Raft,
            GossipEndpoint = endpoints.Gossip,
            Status = runtime.StatusOf(node),
            Zone = node.Zone,
            Rack = node.Rack,
            Kvdb = node.IsKvdbVoter,
            IsLeader = leaderMemberId is not null && leaderMemberId == endpoints.Raft,
            IsLocal = node.Id == runtime.LocalNodeId,
            ReplicaCount = (uint)state.Volumes.Values.Count(v => v.FindReplica(node.Id) is not null),
            AttachedCount = (uint)state.Volumes.Values.Count(v => v.Attachment?.NodeId == node.Id),
            RegisteredUnixMs = node.Registered.ToUnixTimeMilliseconds(),
            Load = stats?.Load ?? 0,
            LastSeenUnixMs = node.Id == runtime.LocalNodeId
                ? DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()
                : member is { LastHeard: var heard } && heard != default ? heard.ToUnixTimeMilliseconds() : 0,
        };
        message.Labels.Add(node.Labels);
        long total = 0, used = 0, provisioned = 0;
        foreach (var pool in node.Pools)
        {
            var poolTotal = stats?.TotalBytes ?? pool.TotalBytes;
            var poolUsed = stats?.UsedBytes ?? pool.UsedBytes;
            var poolProvisioned = state.Volumes.Values.Where(v => v.FindReplica(node.Id)?.PoolId == pool.Id).Sum(v => v.Spec.SizeBytes);
            message.Pools.Add(new V1.Pool
            {
                Id = pool.Id,
                IoPriority = ProtoMapping.ToProto(pool.IoPriority),
                TotalBytes = (ulong)poolTotal,
                UsedBytes = (ulong)poolUsed,
                ProvisionedBytes = (ulong)poolProvisioned,
                OvercommitRatio = runtime.Options.OvercommitRatio,
            });
            total += poolTotal;
            used += poolUsed;
            provisioned += poolProvisioned;
        }

        message.TotalBytes = (ulong)total;
        message.UsedBytes = (ulong)used;
        message.ProvisionedBytes = (ulong)provisioned;
        return message;
    }

    /// <summary>A Raft voter with its node; reachable is gossip's liveness of that node (Raft tracks it on the leader only).</summary>
    public static V1.KvdbMember ToProto(ClusterMemberInfo member, ClusterRuntime runtime)
    {
        var state = runtime.State.Current;
        var node = state.Nodes.Values.FirstOrDefault(n => NodeEndpoints.From(n.Addresses).Raft == member.MemberId);
        return new V1.KvdbMember
        {
            MemberId = member.MemberId,
            NodeId = node?.Id ?? "",
            NodeName = node?.Name ?? "",
            IsLeader = member.IsLeader,
            IsLocal = member.IsLocal,
            Reachable = member.IsLocal || (node is not null ? runtime.IsAlive(node.Id) : member.IsAvailable),
        };
    }

    /// <summary>The node whose Raft endpoint is the leader's member id; null when none.</summary>
    public static NodeInfo? LeaderNode(ClusterState state, string? leaderMemberId) => NodeEndpoints.LeaderOf(state, leaderMemberId);

    private static string NameOf(ClusterState state, string nodeId) => state.Nodes.TryGetValue(nodeId, out var node) ? node.Name : nodeId;
}
