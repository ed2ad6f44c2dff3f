using Prometheus;
using Slab.Cluster.Node;
using Slab.Cluster.State;

namespace Slab.Metrics;

// Cluster-mode figures, from this node's read copy of the cluster state and gossip liveness (what
// slabctl cluster list and status report), so every node answers for the cluster as it sees it.
public sealed partial class NodeMetrics
{
    private static readonly (VolumeHealth Health, string Label)[] HealthLabels =
        [(VolumeHealth.Up, "up"), (VolumeHealth.Degraded, "degraded"), (VolumeHealth.Down, "down")];

    private readonly ClusterFamilies? _clusterMetrics;

    private void CollectCluster(ClusterRuntime runtime)
    {
        var families = _clusterMetrics!;
        families.ReplicaConnections.Set(_listeners.Replication?.ConnectionCount ?? 0);
        var store = runtime.State;
        var state = store.Current;
        families.Nodes.Set(state.Nodes.Count);
        families.NodesOnline.Set(state.Nodes.Values.Count(n => runtime.StatusOf(n) == "online"));
        families.HasQuorum.Set(store.HasQuorum ? 1 : 0);

        var leaderId = store.LeaderId;
        var leader = NodeEndpoints.LeaderOf(state, leaderId);
        var isLeader = leaderId is not null && leaderId == runtime.Options.RaftEndPoint.ToString();
        families.Leader[leader?.Name ?? leaderId ?? ""].Set(isLeader ? 1 : 0);
        families.Leader.EndRound();

        families.Revision.Set(state.Revision);
        if (runtime.Voter is { } voter)
        {
            families.CommitIndex.Set(voter.CommitIndex);
            families.LastApplied.Set(voter.LastAppliedIndex);
        }

        var byHealth = new int[HealthLabels.Length];
        foreach (var volume in state.Volumes.Values)
        {
            byHealth[(int)volume.HealthOf(runtime.IsAlive)]++;
        }

        foreach (var (health, label) in HealthLabels)
        {
            families.Volumes.WithLabels(label).Set(byHealth[(int)health]);
        }
    }

    /// <summary>The cluster-mode metric families (created only in cluster mode, so a single node exports none of them).</summary>
    private sealed class ClusterFamilies
    {
        public ClusterFamilies(IMetricFactory factory)
        {
            ReplicaConnections = factory.CreateGauge(
                "slab_node_replica_connections", "Open connections of other nodes' controllers to this node's replica server.");
            Nodes = factory.CreateGauge("slab_cluster_nodes", "Nodes registered in the cluster state.");
            NodesOnline = factory.CreateGauge(
                "slab_cluster_nodes_online", "Registered nodes that are online: heard over gossip within 3 s and not in maintenance or decommissioning.");
            Leader = new(factory.CreateGauge(
                "slab_cluster_leader", "1 on the node that leads Raft, 0 on the others; label leader: the leader's node name as this node knows it (empty while there is none).", ["leader"]));
            HasQuorum = factory.CreateGauge("slab_cluster_has_quorum", "1 while this node knows a KVDB leader that holds a majority (cluster changes can succeed), else 0.");
            Revision = factory.CreateGauge("slab_cluster_state_revision", "Revision of this node's read copy of the cluster state: commands applied so far.");
            // Set on voters only: a non-voting node has no Raft log, so it shows no such series.
            var votersOnly = new GaugeConfiguration { SuppressInitialValue = true };
            CommitIndex = factory.CreateGauge("slab_cluster_raft_commit_index", "Raft commit index as this KVDB voter knows it (voters only).", votersOnly);
            LastApplied = factory.CreateGauge("slab_cluster_raft_last_applied_index", "Raft log index of the last entry this KVDB voter applied (voters only).", votersOnly);
            Volumes = factory.CreateGauge(
                "slab_cluster_volumes", "Cluster volumes by state: up (every replica in sync on an online node), degraded, down (no in-sync replica on an online node).", ["state"]);
        }

        public Gauge ReplicaConnections { get; }

        public Gauge Nodes { get; }

        public Gauge NodesOnline { get; }

        public ScrapedSeries<Gauge.Child> Leader { get; }

        public Gauge HasQuorum { get; }

        public Gauge Revision { get; }

        public Gauge CommitIndex { get; }

        public Gauge LastApplied { get; }

        public Gauge Volumes { get; }
    }
}
