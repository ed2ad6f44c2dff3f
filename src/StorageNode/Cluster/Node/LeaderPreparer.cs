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

        var options = runtime.Options;
        var topology = PlacementTopology.FromState(current, runtime.IsAlive, LiveUsage, options.OvercommitRatio, options.FullFraction);
        var request = new PlacementRequest(create.VolumeId, create.Spec.Repl, create.Spec.SizeBytes)
        {
            IoPriority = create.Spec.IoPriority,
            NodeSelector = create.Spec.Nodes.IsDefault ? [] : create.Spec.Nodes,
            RequiredLabels = create.Spec.NodeSelector,
        };
        var placed = PlacementEngine.Place(topology, request);
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

    private CommandPreparation CheckAttach(AttachVolume attach, ClusterState current)
    {
        if (current.Nodes.TryGetValue(attach.NodeId, out var node) && node.Status is State.NodeStatus.Maintenance or State.NodeStatus.Decommissioning)
        {
            return CommandPreparation.Refuse(
                Rejection.NodeUnavailable,
                $"node {node.Name} is in {node.Status.ToString().ToLowerInvariant()}: it takes no new attachments; attach on another node, or exit maintenance there (slabctl service maintenance --exit)");
        }

        if (current.FindVolume(attach.Volume) is not { Attachment: { } holder } volume || holder.NodeId == attach.NodeId)
        {
            return CommandPreparation.Replicate(attach);
        }

        var holderName = current.Nodes.TryGetValue(holder.NodeId, out var holderNode) ? holderNode.Name : holder.NodeId;
        if (runtime.IsAlive(holder.NodeId))
        {
            return CommandPreparation.Refuse(
                Rejection.AttachedElsewhere,
                $"volume '{volume.Name}' is attached on {holderName}; detach it there first (attachments of a node that goes offline can be taken over)");
        }

        // The holder is dead as far as the leader can tell: take over; the epoch bump fences it.
        return CommandPreparation.Replicate(attach with { TakeOverFrom = holder.NodeId });
    }

    private LivePoolUsage? LiveUsage(string nodeId)
        => runtime.StatsOf(nodeId) is { TotalBytes: > 0 } stats ? new LivePoolUsage(stats.TotalBytes, stats.UsedBytes) : null;
}
