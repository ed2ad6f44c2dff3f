using Microsoft.Extensions.Logging;
using Slab.Cluster.State;
using Slab.Volumes;

namespace Slab.Cluster.Node;

// Replica repair, run by the leader's reconciler: replicas on a node that is decommissioning, or
// offline (gossip) or in maintenance for longer than the cluster's repl-move-timeout, get a
// replacement placed by policy on another node (MoveReplica). The replacement is rebuilt by the
// volume's controller (where attached, else through an internal resync attachment); its promotion
// removes the old replica, which its node deletes if it ever returns. A decommissioning node that
// holds nothing more leaves the cluster. Every node also applies the cluster's resync rate here.
public sealed partial class ClusterRuntime
{
    private DateTimeOffset _startedAt;

    /// <summary>Limits the bytes this node's controllers copy per second for resyncs and rebuilds (the cluster option).</summary>
    public CopyThrottle ResyncThrottle { get; }

    /// <summary>A snapshot still pending this long after it was recorded was abandoned (its taker died): the leader deletes it.</summary>
    internal static readonly TimeSpan PendingSnapshotTimeout = TimeSpan.FromMinutes(10);

    private bool IsLeader => _voter is not null && State.LeaderId == _options.RaftEndPoint.ToString();

    /// <summary>Deletes pending snapshots older than <see cref="PendingSnapshotTimeout"/> (the replicas' nodes then drop their copies).</summary>
    private async Task DeleteAbandonedSnapshotsAsync(ClusterState state, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        foreach (var volume in state.Volumes.Values)
        {
            foreach (var snapshot in volume.Snapshots)
            {
                if (snapshot.Pending && now - snapshot.Created > PendingSnapshotTimeout)
                {
                    await ProposeLoggedAsync(new DeleteSnapshot { Volume = volume.Id, Snapshot = snapshot.Id }, volume.Name, $"deleted snapshot '{snapshot.Name}', abandoned while it was taken", cancellationToken).ConfigureAwait(false);
                }
            }
        }
    }

    private async Task RepairReplicasAsync(ClusterState state, CancellationToken cancellationToken)
    {
        ResyncThrottle.BytesPerSecond = state.Options.ResyncBytesPerSecond;
        if (!IsLeader)
        {
            return;
        }

        await DeleteAbandonedSnapshotsAsync(state, cancellationToken).ConfigureAwait(false);
        var timeout = TimeSpan.FromSeconds(state.Options.ReplMoveTimeoutSeconds);
        foreach (var node in state.Nodes.Values)
        {
            if (MoveReason(node, timeout) is not { } reason)
            {
                continue;
            }

            var holds = false;
            foreach (var volume in state.Volumes.Values)
            {
                if (volume.FindReplica(node.Id) is null)
                {
                    continue;
                }

                holds = true;
                if (volume.Replicas.Any(r => r.Replaces.Length > 0) || !volume.Replicas.Any(r => r.State == ReplicaState.InSync && IsAlive(r.NodeId)))
                {
                    continue; // one move at a time; nothing to copy from while no in-sync replica is reachable
                }

                await ProposeLoggedAsync(new MoveReplica { Volume = volume.Id, FromNode = node.Id }, volume.Name, $"gets a replacement for its replica on {node.Name} ({reason})", cancellationToken).ConfigureAwait(false);
            }

            if (!holds && node.Status == Slab.Cluster.State.NodeStatus.Decommissioning && !state.Volumes.Values.Any(v => v.Attachment?.NodeId == node.Id))
            {
                try
                {
                    await ProposeOrThrowAsync(new RemoveNode { NodeId = node.Id }, prepared: false, cancellationToken).ConfigureAwait(false);
                    RepairLog.NodeRemoved(_logger, node.Name);
                }
                catch (Common.SlabException e)
                {
                    Log.ReconcileFailed(_logger, node.Name, e.Message);
                }
            }
        }
    }

    /// <summary>Why the replicas on <paramref name="node"/> move now; null when they stay.</summary>
    private string? MoveReason(Slab.Cluster.State.NodeInfo node, TimeSpan timeout)
    {
        if (node.Status == Slab.Cluster.State.NodeStatus.Decommissioning)
        {
            return "it is decommissioning";
        }

        if (timeout <= TimeSpan.Zero || node.Id == _options.NodeId)
        {
            return null;
        }

        var now = _time.GetUtcNow();
        if (node.Status == Slab.Cluster.State.NodeStatus.Maintenance)
        {
            return now - node.StatusSince > timeout ? $"in maintenance longer than repl-move-timeout, {timeout.TotalMinutes:0.##} min" : null;
        }

        if (IsAlive(node.Id))
        {
            return null;
        }

        // Not heard of since this node started: count from then.
        var lastHeard = Liveness.Find(node.Id)?.LastHeard is { } heard && heard > _startedAt ? heard : _startedAt;
        return now - lastHeard > timeout ? $"offline longer than repl-move-timeout, {timeout.TotalMinutes:0.##} min" : null;
    }

    private static partial class RepairLog
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Decommissioned node {Node} removed from the cluster: its replicas have moved")]
        public static partial void NodeRemoved(ILogger logger, string node);
    }
}
