using Slab.Cluster.Placement;
using Slab.Cluster.State;

namespace Slab.Cluster.Node;

/// <summary>
/// What the leader decides before it replicates a command: where a new volume's replicas go
/// (placement over the state plus the leader's live view of the nodes), and whether an attachment
/// may be taken over from a node that is dead. Runs on the leader only.
/// </summary>
internal sealed class LeaderPreparer(ClusterRuntime runtime) : ILeaderCommandPreparer
{
    public CommandPreparation Prepare(ClusterCommand command, ClusterState current) => command switch
    {
        CreateVolume create when create.Replicas.IsDefaultOrEmpty => PlaceVolume(create, current),
        AttachVolume attach when attach.TakeOverFrom is null => CheckAttach(attach, current),
        ChangeReplication change when change.Replicas.IsDefaultOrEmpty => PrepareReplication(change, current),
        MoveReplica move when move.Replacement is null => PlaceReplacement(move, current),
        _ => CommandPreparation.Replicate(command),
    };

    private CommandPreparation PlaceVolume(CreateVolume create, ClusterState current)
    {
        if (current.FindVolume(create.Name) is { } existing)
        {
            // A retry of the same request is answered by apply with the existing volume; anything else is a clash.
            return existing.CreateRequestId == create.RequestId
                ? CommandPreparation.Replicate(create)
                : CommandPreparation.Refuse(Rejection.AlreadyExists, $"volume '{create.Name}' already exists");
        }

        if (create.Origin is { } origin)
        {
            return PlaceClone(create, current, origin);
        }

        var placed = Place(current, create.VolumeId, create.Spec, create.Spec.Repl, kept: [], preferred: create.PreferredNode);
        if (!placed.Succeeded)
        {
            return CommandPreparation.Refuse(Rejection.PlacementViolation, $"cannot place volume '{create.Name}': {placed.Failure.Message}");
        }

        return CommandPreparation.Replicate(create with
        {
            // A new volume is empty, so every replica starts with every acknowledged write.
            Replicas = [.. placed.Replicas.Select(r => new ReplicaInfo { NodeId = r.NodeId, PoolId = r.PoolId, State = ReplicaState.InSync })],
        });
    }

    /// <summary>
    /// A clone: in sync on the online nodes whose replicas hold the origin snapshot (they reflink it,
    /// in the source replica's pool), the rest placed by policy as rebuilding (copied from those).
    /// </summary>
    private CommandPreparation PlaceClone(CreateVolume create, ClusterState current, VolumeOrigin origin)
    {
        if (!current.Volumes.TryGetValue(origin.VolumeId, out var source) || source.FindSnapshotById(origin.SnapshotId) is not { Pending: false } snapshot)
        {
            return CommandPreparation.Replicate(create); // apply gives the precise refusal
        }

        var holders = snapshot.HoldingReplicas(source)
            .Where(r => runtime.IsAlive(r.NodeId) && current.Nodes.TryGetValue(r.NodeId, out var node) && node.Status == State.NodeStatus.Online)
            .Take(create.Spec.Repl)
            .Select(r => new ReplicaInfo { NodeId = r.NodeId, PoolId = r.PoolId, State = ReplicaState.InSync })
            .ToList();
        if (holders.Count == 0)
        {
            var names = string.Join(", ", snapshot.Holders.Select(h => current.Nodes.TryGetValue(h.NodeId, out var n) ? n.Name : h.NodeId));
            return CommandPreparation.Refuse(Rejection.PlacementViolation,
                $"cannot clone '{source.Name}@{snapshot.Name}': no online node holds it (held on {(names.Length > 0 ? names : "no node")}); bring one of them back");
        }

        if (holders.Count == create.Spec.Repl)
        {
            return CommandPreparation.Replicate(create with { Replicas = [.. holders] });
        }

        var placed = Place(current, create.VolumeId, create.Spec, create.Spec.Repl, holders);
        if (!placed.Succeeded)
        {
            return CommandPreparation.Refuse(Rejection.PlacementViolation, $"cannot place volume '{create.Name}': {placed.Failure.Message}");
        }

        return CommandPreparation.Replicate(create with { Replicas = [.. holders, .. placed.Replicas.Select(r => NewRebuildingReplica(r, replaces: ""))] });
    }

    /// <summary>
    /// ha-update: raising places the new replicas by policy (or on <c>--node</c>) as rebuilding;
    /// lowering removes <c>--node</c>'s replica, else the least useful ones: out, then catching up or
    /// rebuilding, then on an offline node, then in sync on a node other than the attached one, last placed first.
    /// </summary>
    private CommandPreparation PrepareReplication(ChangeReplication change, ClusterState current)
    {
        if (current.FindVolume(change.Volume) is not { } volume || change.Repl is < 1 or > ClusterStateTransitions.MaxRepl || change.Repl == volume.Replicas.Length)
        {
            return CommandPreparation.Replicate(change); // apply gives the precise refusal
        }

        State.NodeInfo? named = null;
        if (change.Node.Length > 0 && (named = current.FindNode(change.Node)) is null)
        {
            return CommandPreparation.Refuse(Rejection.NodeNotFound, $"no node named or with id '{change.Node}'; list nodes with 'slabctl cluster list'");
        }

        if (change.Repl < volume.Replicas.Length)
        {
            if (named is not null && volume.FindReplica(named.Id) is null)
            {
                return CommandPreparation.Refuse(Rejection.ReplicaNotFound, $"node {named.Name} holds no replica of volume '{volume.Name}'");
            }

            var removed = named is not null
                ? [named.Id]
                : volume.Replicas
                    .Select((replica, index) => (replica, index))
                    .OrderBy(r => r.replica.State switch { ReplicaState.Out => 0, ReplicaState.CatchingUp or ReplicaState.Rebuilding => 1, _ => 2 })
                    .ThenBy(r => runtime.IsAlive(r.replica.NodeId) ? 1 : 0)
                    .ThenBy(r => r.replica.NodeId == volume.Attachment?.NodeId ? 1 : 0)
                    .ThenByDescending(r => r.index)
                    .Take(volume.Replicas.Length - change.Repl)
                    .Select(r => r.replica.NodeId)
                    .ToHashSet(StringComparer.Ordinal);
            return CommandPreparation.Replicate(change with { Replicas = [.. volume.Replicas.Where(r => !removed.Contains(r.NodeId))] });
        }

        var placed = Place(current, volume.Id, volume.Spec, change.Repl, volume.Replicas, onNode: named?.Id);
        if (!placed.Succeeded)
        {
            return CommandPreparation.Refuse(Rejection.PlacementViolation, $"cannot place another replica of volume '{volume.Name}': {placed.Failure.Message}");
        }

        return CommandPreparation.Replicate(change with
        {
            Replicas = volume.Replicas.AddRange(placed.Replicas.Select(r => NewRebuildingReplica(r, replaces: ""))),
        });
    }

    /// <summary>A replacement for the replica on <c>FromNode</c>: placed by policy away from that node and the volume's other replicas.</summary>
    private CommandPreparation PlaceReplacement(MoveReplica move, ClusterState current)
    {
        if (current.FindVolume(move.Volume) is not { } volume || volume.FindReplica(move.FromNode) is null)
        {
            return CommandPreparation.Replicate(move); // apply gives the precise refusal
        }

        var kept = volume.Replicas.Where(r => r.NodeId != move.FromNode).ToList();
        var placed = Place(current, volume.Id, volume.Spec, kept.Count + 1, kept, avoid: move.FromNode);
        if (!placed.Succeeded)
        {
            return CommandPreparation.Refuse(Rejection.PlacementViolation, $"cannot place a replacement of volume '{volume.Name}''s replica on {move.FromNode}: {placed.Failure.Message}");
        }

        return CommandPreparation.Replicate(move with { Replacement = NewRebuildingReplica(placed.Replicas[0], replaces: move.FromNode) });
    }

    /// <summary>
    /// Places a volume's replicas by policy, over the state and the leader's live view of the nodes:
    /// <paramref name="replicaCount"/> in all, <paramref name="kept"/> already placed; only on
    /// <paramref name="onNode"/> when given (else the spec's <c>--nodes</c>), never on <paramref name="avoid"/>,
    /// the first on <paramref name="preferred"/> when it qualifies.
    /// </summary>
    private PlacementResult Place(
        ClusterState current, string volumeId, VolumeSpec spec, int replicaCount, IReadOnlyList<ReplicaInfo> kept, string? onNode = null, string? avoid = null, string? preferred = null)
    {
        var options = runtime.Options;
        var topology = PlacementTopology.FromState(current, runtime.IsAlive, LiveUsage, options.OvercommitRatio, options.FullFraction);
        return PlacementEngine.Place(topology, new PlacementRequest(volumeId, replicaCount, spec.SizeBytes)
        {
            IoPriority = spec.IoPriority,
            NodeSelector = onNode is not null ? [onNode] : spec.Nodes.IsDefault ? [] : spec.Nodes,
            RequiredLabels = spec.NodeSelector,
            Zones = spec.Zones.IsDefault ? [] : spec.Zones,
            Racks = spec.Racks.IsDefault ? [] : spec.Racks,
            PlacedReplicas = [.. kept.Select(r => new ReplicaLocation(r.NodeId, r.PoolId))],
            AvoidNodes = avoid is null ? [] : [avoid],
            PreferredNode = preferred,
        });
    }

    /// <summary>A replica placed at <paramref name="location"/> that starts empty: rebuilding, with a fresh incarnation.</summary>
    private static ReplicaInfo NewRebuildingReplica(ReplicaLocation location, string replaces) => new()
    {
        NodeId = location.NodeId,
        PoolId = location.PoolId,
        State = ReplicaState.Rebuilding,
        Incarnation = Guid.NewGuid().ToString("N"),
        Replaces = replaces,
    };

    private CommandPreparation CheckAttach(AttachVolume attach, ClusterState current)
    {
        if (current.Nodes.TryGetValue(attach.NodeId, out var node) && node.Status is State.NodeStatus.Maintenance or State.NodeStatus.Decommissioning)
        {
            return CommandPreparation.Refuse(
                Rejection.NodeUnavailable,
                $"node {node.Name} is in {node.Status.ToString().ToLowerInvariant()}: it takes no new attachments; attach on another node, or exit maintenance there (slabctl service maintenance --exit)");
        }

        if (current.FindVolume(attach.Volume) is not { Attachment: { } holder } volume || holder.NodeId == attach.NodeId
            || (holder.Purpose is State.AttachPurpose.Resync or State.AttachPurpose.Snapshot && attach.Purpose == State.AttachPurpose.Host))
        {
            return CommandPreparation.Replicate(attach); // apply takes a resync or snapshot attachment over for a host attach
        }

        var holderName = current.Nodes.TryGetValue(holder.NodeId, out var holderNode) ? holderNode.Name : holder.NodeId;
        if (runtime.IsAlive(holder.NodeId))
        {
            return CommandPreparation.Refuse(
                Rejection.AttachedElsewhere,
                holder.Purpose switch
                {
                    State.AttachPurpose.Restore => $"volume '{volume.Name}' is being restored by {holderName}; wait for the restore to finish",
                    State.AttachPurpose.Snapshot => $"volume '{volume.Name}' is being snapshotted by {holderName}; try again in a moment",
                    State.AttachPurpose.Resync => $"volume '{volume.Name}' is being resynced by {holderName}; try again when it is in sync",
                    _ => $"volume '{volume.Name}' is attached on {holderName}; detach it there first (attachments of a node that goes offline can be taken over)",
                });
        }

        // The holder is dead as far as the leader can tell: take over; the epoch bump fences it.
        return CommandPreparation.Replicate(attach with { TakeOverFrom = holder.NodeId });
    }

    private LivePoolUsage? LiveUsage(string nodeId)
        => runtime.StatsOf(nodeId) is { TotalBytes: > 0 } stats ? new LivePoolUsage(stats.TotalBytes, stats.UsedBytes) : null;
}
