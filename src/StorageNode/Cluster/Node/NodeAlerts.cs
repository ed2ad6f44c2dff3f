using Slab.Cluster.State;
using Slab.Common;
using Slab.Store;

namespace Slab.Cluster.Node;

/// <summary>What an alert is about; <c>/metrics</c> counts alerts by it (<see cref="NodeAlert.TypeLabel"/>).</summary>
public enum AlertType
{
    /// <summary>This node's pool is at or past the full threshold: allocations are refused (critical).</summary>
    PoolFull,

    /// <summary>This node's pool is at or past the near-full threshold (warning).</summary>
    PoolNearFull,

    /// <summary>A replica does not count for its volume's writes, or sits on an offline node (warning; critical when the volume has no usable replica).</summary>
    ReplicaDegraded,

    /// <summary>A committed snapshot no replica holds any more: it can only be deleted (warning).</summary>
    SnapshotUnheld,

    /// <summary>This node sees no KVDB leader with a majority: cluster changes are refused (critical).</summary>
    NoQuorum,
}

/// <summary>How bad an alert is.</summary>
public enum AlertSeverity
{
    Warning,
    Critical,
}

/// <summary>One active alert as this node reports it.</summary>
/// <param name="Resource">What it is about, for people ("pool P", "volume V", "snapshot V@S", "kvdb").</param>
/// <param name="Message">What is wrong and what to do.</param>
/// <param name="RaisedAt">When its condition began, when known.</param>
public sealed record NodeAlert(AlertType Type, AlertSeverity Severity, string Resource, string Message, DateTimeOffset? RaisedAt)
{
    /// <summary>The type in snake case, as a metric label: <c>pool_full</c>, <c>replica_degraded</c>, ...</summary>
    public string TypeLabel => LabelOf(Type);

    /// <summary><c>warning</c> or <c>critical</c> (the API's and the metrics' word).</summary>
    public string SeverityLabel => LabelOf(Severity);

    public static string LabelOf(AlertType type) => type switch
    {
        AlertType.PoolFull => "pool_full",
        AlertType.PoolNearFull => "pool_near_full",
        AlertType.ReplicaDegraded => "replica_degraded",
        AlertType.SnapshotUnheld => "snapshot_unheld",
        _ => "no_quorum",
    };

    public static string LabelOf(AlertSeverity severity) => severity == AlertSeverity.Critical ? "critical" : "warning";
}

/// <summary>
/// Computes the alerts this node reports, for <c>slabctl status</c> (the Node service) and
/// <c>/metrics</c> alike: its pool's (near) full condition in any mode and, in cluster mode, a replica
/// that does not count for writes, a snapshot no replica holds, no quorum.
/// </summary>
/// <remarks>
/// Thread-safe; reads snapshots only (the store's pool status, the cluster state's read copy, gossip
/// liveness) and takes no lock across I/O. Node-local conditions are dated by the shared
/// <see cref="AlertClock"/> from the first call that saw them; replica alerts from the state's
/// <c>StateSince</c>. <c>cluster</c> is registered only in cluster mode (DI passes null otherwise).
/// </remarks>
public sealed class NodeAlerts(IVolumeStore store, AlertClock clock, ClusterRuntime? cluster = null)
{
    /// <summary>Every active alert now: the pool's first, then the cluster's (replicas and snapshots per volume, then quorum).</summary>
    public IReadOnlyList<NodeAlert> Current() => Current(store.GetPoolStatus());

    /// <summary>As <see cref="Current()"/>, for a pool status the caller already read.</summary>
    public IReadOnlyList<NodeAlert> Current(PoolStatus pool)
    {
        ArgumentNullException.ThrowIfNull(pool);
        var alerts = new List<NodeAlert>();
        AddPoolAlert(alerts, pool);
        if (cluster is not null)
        {
            AddClusterAlerts(alerts, cluster);
        }

        return alerts;
    }

    private void AddPoolAlert(List<NodeAlert> alerts, PoolStatus pool)
    {
        var options = store.Options;
        var full = pool.UsedFraction >= options.FullFraction;
        // The pool alert is dated from when its condition (near full, or full) began.
        var condition = full ? $"pool {pool.Id} full" : pool.UsedFraction >= options.NearFullFraction ? $"pool {pool.Id} near full" : null;
        foreach (var other in (string[])[$"pool {pool.Id} full", $"pool {pool.Id} near full"])
        {
            if (other != condition)
            {
                clock.Inactive(other);
            }
        }

        if (condition is null)
        {
            return;
        }

        alerts.Add(new NodeAlert(
            full ? AlertType.PoolFull : AlertType.PoolNearFull,
            full ? AlertSeverity.Critical : AlertSeverity.Warning,
            $"pool {pool.Id}",
            full
                ? $"pool is {pool.UsedFraction:P0} full ({Sizes.Human(pool.UsedBytes)} of {Sizes.Human(pool.TotalBytes)}): new volumes, clones and grows are refused; free space or add a drive"
                : $"pool is {pool.UsedFraction:P0} full ({Sizes.Human(pool.UsedBytes)} of {Sizes.Human(pool.TotalBytes)}); at {options.FullFraction:P0} new allocations will be refused",
            clock.ActiveSince(condition)));
    }

    private static void AddClusterAlerts(List<NodeAlert> alerts, ClusterRuntime runtime)
    {
        var state = runtime.State.Current;
        AddReplicaAlerts(alerts, runtime.IsAlive, state);
        if (!runtime.State.HasQuorum)
        {
            alerts.Add(new NodeAlert(
                AlertType.NoQuorum,
                AlertSeverity.Critical,
                "kvdb",
                "no quorum: this node sees no KVDB leader with a majority; cluster changes are refused until a majority of KVDB members is reachable",
                RaisedAt: null));
        }
    }

    /// <summary>
    /// One alert per replica that does not count for its volume's writes (out, catching up,
    /// rebuilding) or sits on a node that is offline, dated from when its state changed: a warning
    /// while the volume has another in-sync replica on an online node, critical when it has none.
    /// And one per snapshot that no replica holds any more (undated: the state does not record when
    /// its last holder left).
    /// </summary>
    internal static void AddReplicaAlerts(List<NodeAlert> alerts, Func<string, bool> isAlive, ClusterState state)
    {
        foreach (var volume in state.Volumes.Values)
        {
            var usable = volume.UsableReplicas(isAlive);
            foreach (var replica in volume.Replicas)
            {
                var online = isAlive(replica.NodeId);
                if (replica.State == ReplicaState.InSync && online)
                {
                    continue;
                }

                var node = state.Nodes.TryGetValue(replica.NodeId, out var info) ? info.Name : replica.NodeId;
                var what = replica.State switch
                {
                    ReplicaState.Out => "is faulted (out of the in-sync set)",
                    ReplicaState.CatchingUp => "is catching up (resync)",
                    ReplicaState.Rebuilding => "is being rebuilt",
                    _ => "is in sync",
                };
                var where = online ? "" : $"; node {node} is offline";
                alerts.Add(new NodeAlert(
                    AlertType.ReplicaDegraded,
                    usable == 0 ? AlertSeverity.Critical : AlertSeverity.Warning,
                    $"volume {volume.Name}",
                    usable == 0
                        ? $"replica on {node} {what}{where}; the volume has no in-sync replica on an online node: its I/O waits for one to return"
                        : $"replica on {node} {what}{where}; writes go on on {usable} in-sync replica(s)",
                    replica.StateSince == default ? null : replica.StateSince));
            }

            foreach (var snapshot in volume.Snapshots)
            {
                if (!snapshot.Pending && !snapshot.HoldingReplicas(volume).Any())
                {
                    // Its copies went with replicas that were replaced or rebuilt since it was taken.
                    alerts.Add(new NodeAlert(
                        AlertType.SnapshotUnheld,
                        AlertSeverity.Warning,
                        $"snapshot {volume.Name}@{snapshot.Name}",
                        "no replica holds this snapshot any more (the replicas that held it were replaced or removed before another copied it): it cannot be restored or cloned; delete it",
                        RaisedAt: null));
                }
            }
        }
    }
}
