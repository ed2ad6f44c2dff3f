using System.Net;
using Grpc.Core;
using Slab.Cluster.Node;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;


/// <summary>
/// The Cluster service: nodes, KVDB members, maintenance and decommission. On a node started
/// without <c>--cluster-id</c>, Inspect and ListNodes describe that one node and the rest is refused.
/// </summary>
public sealed class ClusterApiService(VolumeManager volumes, Store.IVolumeStore store, LocalNodeIdentity localNode, TimeProvider time, IServiceProvider services) : V1.Cluster.ClusterBase
{
    private ClusterRuntime? Runtime => (ClusterRuntime?)services.GetService(typeof(ClusterRuntime));

    public override Task<V1.ClusterInfo> Inspect(V1.ClusterInspectRequest request, ServerCallContext context)
    {
        if (Runtime is not { } runtime)
        {
            var single = SingleNode();
            var info = new V1.ClusterInfo
            {
                ClusterId = localNode.ClusterId,
                LeaderNodeId = localNode.NodeId,
                LeaderNodeName = localNode.NodeName,
                HasQuorum = true,
                VolumeCount = (uint)store.ListVolumes().Count,
                TotalBytes = single.TotalBytes,
                UsedBytes = single.UsedBytes,
                LocalNodeId = localNode.NodeId,
            };
            info.Nodes.Add(single);
            return Task.FromResult(info);
        }

        var state = runtime.State.Current;
        var leaderId = runtime.State.LeaderId;
        var leader = ClusterProtoMapping.LeaderNode(state, leaderId);
        var response = new V1.ClusterInfo
        {
            ClusterId = runtime.Options.ClusterId,
            Clustered = true,
            LeaderNodeId = leader?.Id ?? "",
            LeaderNodeName = leader?.Name ?? leaderId ?? "",
            HasQuorum = runtime.State.HasQuorum,
            Revision = (ulong)state.Revision,
            VolumeCount = (uint)state.Volumes.Count,
            LocalNodeId = runtime.LocalNodeId,
        };
        foreach (var node in state.Nodes.Values.OrderBy(n => n.Name, StringComparer.Ordinal))
        {
            var message = ClusterProtoMapping.ToProto(node, runtime, leaderId);
            response.Nodes.Add(message);
            if (message.Status == "online")
            {
                response.TotalBytes += message.TotalBytes;
                response.UsedBytes += message.UsedBytes;
            }
        }

        response.KvdbMembers.Add(runtime.State.Members.Select(m => ClusterProtoMapping.ToProto(m, runtime)));
        return Task.FromResult(response);
    }

    public override async Task<V1.ListNodesResponse> ListNodes(V1.ListNodesRequest request, ServerCallContext context)
    {
        var info = await Inspect(new V1.ClusterInspectRequest(), context).ConfigureAwait(false);
        var response = new V1.ListNodesResponse();
        response.Nodes.Add(info.Nodes);
        return response;
    }

    public override Task<V1.ClusterNode> InspectNode(V1.InspectNodeRequest request, ServerCallContext context)
    {
        if (Runtime is not { } runtime)
        {
            var single = SingleNode();
            return request.Node == single.Id || request.Node == single.Name
                ? Task.FromResult(single)
                : throw new SlabException(SlabErrorCode.NotFound, $"node '{request.Node}' not found (this node runs alone)");
        }

        var node = RequireNode(runtime, request.Node);
        return Task.FromResult(ClusterProtoMapping.ToProto(node, runtime, runtime.State.LeaderId));
    }

    public override Task<V1.KvdbMembersResponse> KvdbMembers(V1.KvdbMembersRequest request, ServerCallContext context)
        => Task.FromResult(Members(RequireCluster()));

    public override async Task<V1.KvdbMembersResponse> AddKvdbMember(V1.AddKvdbMemberRequest request, ServerCallContext context)
    {
        var runtime = RequireCluster();
        var voter = RequireVoter(runtime, "add a KVDB member");
        var raft = RaftEndPointToAdd(runtime, request.Node);
        if (runtime.State.Members.Any(m => m.MemberId == raft.ToString()))
        {
            throw new SlabException(SlabErrorCode.AlreadyExists, $"{request.Node} ({raft}) is already a KVDB member");
        }

        await ChangeMembershipAsync(() => voter.AddVoterAsync(new ClusterPeer(raft.ToString(), raft, ClusterNodeOptions.ProposalEndPointOf(raft)), context.CancellationToken))
            .ConfigureAwait(false);
        await WaitForMembersAsync(runtime, members => members.Any(m => m.MemberId == raft.ToString()), context.CancellationToken).ConfigureAwait(false);
        return Members(runtime);
    }

    /// <summary>
    /// The Raft endpoint of a node to add as a voter: a registered node (started with --kvdb) by id,
    /// name or address, or the Raft endpoint IP[:PORT] of a --kvdb node that waits to be added and,
    /// not being a member yet, cannot register itself.
    /// </summary>
    private static IPEndPoint RaftEndPointToAdd(ClusterRuntime runtime, string reference)
    {
        NodeInfo? node = null;
        try
        {
            node = RequireNode(runtime, reference);
        }
        catch (SlabException e) when (e.Code == SlabErrorCode.NotFound)
        {
            var endPoint = IPEndPoint.TryParse(reference, out var parsed) && reference.Contains('.', StringComparison.Ordinal) | reference.Contains(':', StringComparison.Ordinal)
                ? parsed
                : null;
            if (endPoint is null)
            {
                throw new SlabException(
                    SlabErrorCode.NotFound,
                    $"node '{reference}' not found; a --kvdb node that waits to be added is not registered yet: give its Raft endpoint IP[:PORT] (port 9504 by default)");
            }

            if (endPoint.Port == 0)
            {
                endPoint.Port = 9504;
            }

            return endPoint;
        }

        if (!node.IsKvdbVoter)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"node {node.Name} was not started with --kvdb; restart it with --kvdb, then add it");
        }

        return NodeEndpoints.Parse(NodeEndpoints.From(node.Addresses).Raft)
            ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"node {node.Name} has no Raft endpoint in the cluster state");
    }

    /// <summary>Waits (up to a few seconds) until this node has applied a membership change the leader committed.</summary>
    private async Task WaitForMembersAsync(ClusterRuntime runtime, Func<IReadOnlyList<ClusterMemberInfo>, bool> applied, CancellationToken cancellationToken)
    {
        var deadline = time.GetTimestamp();
        while (!applied(runtime.State.Members) && time.GetElapsedTime(deadline) < TimeSpan.FromSeconds(5))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50), time, cancellationToken).ConfigureAwait(false);
        }
    }

    public override async Task<V1.KvdbMembersResponse> RemoveKvdbMember(V1.RemoveKvdbMemberRequest request, ServerCallContext context)
    {
        var runtime = RequireCluster();
        var voter = RequireVoter(runtime, "remove a KVDB member");
        var members = runtime.State.Members;
        var member = members.FirstOrDefault(m => m.MemberId == request.Member);
        if (member is null && runtime.State.Current.FindNode(request.Member) is { } node)
        {
            member = members.FirstOrDefault(m => m.MemberId == NodeEndpoints.From(node.Addresses).Raft);
        }

        if (member is null || member.RaftEndPoint is not IPEndPoint raft)
        {
            throw new SlabException(SlabErrorCode.NotFound, $"'{request.Member}' is not a KVDB member; see slabctl service kvdb members");
        }

        if (members.Count <= 1)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, "the last KVDB member cannot be removed");
        }

        await ChangeMembershipAsync(() => voter.RemoveVoterAsync(raft, context.CancellationToken)).ConfigureAwait(false);
        await WaitForMembersAsync(runtime, current => current.All(m => m.MemberId != member.MemberId), context.CancellationToken).ConfigureAwait(false);
        return Members(runtime);
    }

    public override async Task<V1.ClusterNode> SetMaintenance(V1.SetMaintenanceRequest request, ServerCallContext context)
    {
        var runtime = RequireCluster();
        var node = string.IsNullOrEmpty(request.Node) ? RequireNode(runtime, runtime.LocalNodeId) : RequireNode(runtime, request.Node);
        await runtime.ProposeOrThrowAsync(
            new SetNodeStatus { NodeId = node.Id, Status = request.Enter ? NodeStatus.Maintenance : NodeStatus.Online },
            prepared: false,
            context.CancellationToken).ConfigureAwait(false);
        return ClusterProtoMapping.ToProto(RequireNode(runtime, node.Id), runtime, runtime.State.LeaderId);
    }

    public override async Task<V1.DecommissionResponse> Decommission(V1.DecommissionRequest request, ServerCallContext context)
    {
        var runtime = RequireCluster();
        var state = runtime.State.Current;
        var node = RequireNode(runtime, request.Node);
        var onlyCopies = state.Volumes.Values
            .Where(v => v.FindReplica(node.Id) is not null && !v.Replicas.Any(r => r.State == ReplicaState.InSync && r.NodeId != node.Id))
            .Select(v => v.Name)
            .ToList();
        if (onlyCopies.Count > 0 && !runtime.IsAlive(node.Id))
        {
            throw new SlabException(
                SlabErrorCode.FailedPrecondition,
                $"node {node.Name} is offline and holds the only in-sync copy of {onlyCopies.Count} volume(s): {string.Join(", ", onlyCopies.Take(10))}{(onlyCopies.Count > 10 ? ", ..." : "")}; bring it back so they can move, or delete them");
        }

        var attached = state.Volumes.Values.Where(v => v.Attachment?.NodeId == node.Id).Select(v => v.Name).ToList();
        if (attached.Count > 0)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"node {node.Name} has volumes attached: {string.Join(", ", attached)}; detach them first");
        }

        var raft = NodeEndpoints.From(node.Addresses).Raft;
        if (runtime.State.Members.Any(m => m.MemberId == raft))
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"node {node.Name} is a KVDB member; remove it first (slabctl service kvdb remove-member --node {raft})");
        }

        var holding = state.Volumes.Values.Count(v => v.FindReplica(node.Id) is not null);
        if (holding > 0)
        {
            // The leader moves them (replacements rebuilt elsewhere) and removes the node when it holds nothing.
            await runtime.ProposeOrThrowAsync(new SetNodeStatus { NodeId = node.Id, Status = NodeStatus.Decommissioning }, prepared: false, context.CancellationToken).ConfigureAwait(false);
            return new V1.DecommissionResponse { Removed = false, ReplicasMoving = (uint)holding };
        }

        await runtime.ProposeOrThrowAsync(new RemoveNode { NodeId = node.Id }, prepared: false, context.CancellationToken).ConfigureAwait(false);
        return new V1.DecommissionResponse { Removed = true };
    }

    public override Task<V1.ClusterOptions> GetOptions(V1.GetClusterOptionsRequest request, ServerCallContext context)
        => Task.FromResult(ToProto(RequireCluster().State.Current.Options));

    public override async Task<V1.ClusterOptions> UpdateOptions(V1.UpdateClusterOptionsRequest request, ServerCallContext context)
    {
        var runtime = RequireCluster();
        if (!request.HasReplMoveTimeoutSeconds && !request.HasResyncRateBytesPerSecond)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "nothing to update: give a repl-move timeout and/or a resync rate");
        }

        if (request.ResyncRateBytesPerSecond > long.MaxValue || request.ReplMoveTimeoutSeconds > int.MaxValue)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "value out of range");
        }

        var result = await runtime.ProposeOrThrowAsync(
            new SetClusterOptions
            {
                ReplMoveTimeoutSeconds = request.HasReplMoveTimeoutSeconds ? (int)request.ReplMoveTimeoutSeconds : null,
                ResyncBytesPerSecond = request.HasResyncRateBytesPerSecond ? (long)request.ResyncRateBytesPerSecond : null,
            },
            prepared: false,
            context.CancellationToken).ConfigureAwait(false);
        await runtime.WaitForRevisionAsync(result.Revision, TimeSpan.FromSeconds(5), context.CancellationToken).ConfigureAwait(false);
        return ToProto(runtime.State.Current.Options);
    }

    private static V1.ClusterOptions ToProto(Slab.Cluster.State.ClusterOptions options) => new()
    {
        ReplMoveTimeoutSeconds = (uint)options.ReplMoveTimeoutSeconds,
        ResyncRateBytesPerSecond = (ulong)options.ResyncBytesPerSecond,
    };

    private static V1.KvdbMembersResponse Members(ClusterRuntime runtime)
    {
        var response = new V1.KvdbMembersResponse();
        response.Members.Add(runtime.State.Members.Select(m => ClusterProtoMapping.ToProto(m, runtime)));
        return response;
    }

    private static async Task ChangeMembershipAsync(Func<Task> change)
    {
        try
        {
            await change().ConfigureAwait(false);
        }
        catch (ClusterStateException e)
        {
            throw new SlabException(e.Error == ClusterStateError.NoQuorum ? SlabErrorCode.Unavailable : SlabErrorCode.FailedPrecondition, e.Message, e);
        }
    }

    private ClusterRuntime RequireCluster() => Runtime
        ?? throw new SlabException(SlabErrorCode.FailedPrecondition, "this node is not part of a cluster: start slabd with --cluster-id (and --kvdb/--peers) to form or join one");

    private static ClusterStateNode RequireVoter(ClusterRuntime runtime, string what) => runtime.Voter
        ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"to {what}, run the command against a KVDB member (this node is not one)");

    /// <summary>Finds a node by id, name or address ("ip" or "ip:port" of any of its endpoints).</summary>
    internal static NodeInfo RequireNode(ClusterRuntime runtime, string reference)
    {
        if (string.IsNullOrWhiteSpace(reference))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "node name is empty");
        }

        var state = runtime.State.Current;
        if (state.FindNode(reference) is { } node)
        {
            return node;
        }

        var matches = state.Nodes.Values
            .Where(n => n.Addresses.Any(a => a == reference || (IPEndPoint.TryParse(a, out var ep) && ep.Address.ToString() == reference)))
            .ToList();
        return matches.Count switch
        {
            1 => matches[0],
            0 => throw new SlabException(SlabErrorCode.NotFound, $"node '{reference}' not found; see slabctl cluster list"),
            _ => throw new SlabException(SlabErrorCode.InvalidArgument, $"'{reference}' matches {matches.Count} nodes ({string.Join(", ", matches.Select(n => n.Name))}); give a node id or name"),
        };
    }

    private V1.ClusterNode SingleNode()
    {
        var pool = store.GetPoolStatus();
        var message = new V1.ClusterNode
        {
            Id = localNode.NodeId,
            Name = localNode.NodeName,
            Status = "online",
            IsLeader = true,
            IsLocal = true,
            TotalBytes = (ulong)pool.TotalBytes,
            UsedBytes = (ulong)pool.UsedBytes,
            ProvisionedBytes = (ulong)pool.ProvisionedBytes,
            ReplicaCount = (uint)store.ListVolumes().Count,
            AttachedCount = (uint)volumes.AttachedCount,
            LastSeenUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            Version = localNode.Version,
        };
        message.Pools.Add(ProtoMapping.ToProto(pool));
        return message;
    }
}
