using System.Collections.Immutable;
using Slab.Cluster.Placement;
using Slab.Store;
using Xunit;
using static Slab.Tests.ClusterState.ClusterStateTestData;
using S = Slab.Cluster.State;

namespace Slab.Tests.Placement;

/// <summary>The Raft cluster state as the placement engine sees it: status, provisioning, live usage.</summary>
public sealed class PlacementTopologyTests
{
    private const long GiB = 1L << 30;

    private static readonly Func<string, bool> AllAlive = _ => true;

    [Fact]
    public void Maintenance_and_decommissioning_come_from_the_state_and_liveness_decides_the_rest()
    {
        var state = Build(
            Node("alive"),
            Node("dead"),
            Node("offline-alive"),
            Node("offline-dead"),
            Node("maint"),
            Node("decom"),
            Status("offline-alive", S.NodeStatus.Offline),
            Status("offline-dead", S.NodeStatus.Offline),
            Status("maint", S.NodeStatus.Maintenance),
            Status("decom", S.NodeStatus.Decommissioning));
        var asked = new List<string>();

        var topology = PlacementTopology.FromState(state, id =>
        {
            asked.Add(id);
            return id is "alive" or "offline-alive" or "maint";
        });

        Assert.Equal(NodeStatus.Online, NodeOf(topology, "alive").Status);
        Assert.Equal(NodeStatus.Offline, NodeOf(topology, "dead").Status);
        Assert.Equal(NodeStatus.Online, NodeOf(topology, "offline-alive").Status); // gossip is fresher than a recorded Offline
        Assert.Equal(NodeStatus.Offline, NodeOf(topology, "offline-dead").Status);
        Assert.Equal(NodeStatus.Maintenance, NodeOf(topology, "maint").Status); // alive, but the operator's decision stands
        Assert.Equal(NodeStatus.Decommissioning, NodeOf(topology, "decom").Status);
        Assert.Equal(["alive", "dead", "offline-alive", "offline-dead"], asked.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Provisioned_bytes_are_summed_from_the_volumes_replicas_not_taken_from_the_nodes_report()
    {
        var state = Build(
            Node("a") with { Pools = [Pool("p0", totalGiB: 1000, reportedProvisionedGiB: 999_999), Pool("p1", totalGiB: 1000)] },
            Node("b") with { Pools = [Pool("pb", totalGiB: 1000, reportedProvisionedGiB: 1)] },
            Node("c"),
            Volume("v10", repl: 2, size: 10 * GiB) with { Replicas = [On("a", "p0", S.ReplicaState.InSync), On("b", "pb", S.ReplicaState.InSync)] },
            Volume("v20", repl: 2, size: 20 * GiB) with { Replicas = [On("a", "p1", S.ReplicaState.InSync), On("b", "pb", S.ReplicaState.CatchingUp)] },
            Volume("v4", repl: 1, size: 4 * GiB) with { Replicas = [On("a", "p0", S.ReplicaState.Out)] },
            Volume("unplaced", repl: 3, size: 500 * GiB));

        var topology = PlacementTopology.FromState(state, AllAlive);

        Assert.Equal(14 * GiB, PoolOf(topology, "a", "p0").ProvisionedBytes); // every replica state counts: it holds its space
        Assert.Equal(20 * GiB, PoolOf(topology, "a", "p1").ProvisionedBytes);
        Assert.Equal(30 * GiB, PoolOf(topology, "b", "pb").ProvisionedBytes);
        Assert.Equal(0, PoolOf(topology, "c", "pool-c").ProvisionedBytes);

        // The node stops reporting pool p1: its replica there counts nowhere, p0 is unchanged.
        state = Build(state, new S.UpdateNode { NodeId = "a", Pools = [Pool("p0", totalGiB: 1000)] });
        topology = PlacementTopology.FromState(state, AllAlive);

        Assert.Equal(14 * GiB, Assert.Single(NodeOf(topology, "a").Pools).ProvisionedBytes);
    }

    [Fact]
    public void Live_usage_replaces_the_first_pools_figures_and_the_record_serves_otherwise()
    {
        var state = Build(
            Node("a") with { Pools = [Pool("p0", totalGiB: 1000, usedGiB: 100), Pool("p1", totalGiB: 2000, usedGiB: 200)] },
            Node("b") with { Pools = [Pool("pb", totalGiB: 3000, usedGiB: 300)] },
            Node("c") with { Pools = [] });
        var asked = new List<string>();

        var topology = PlacementTopology.FromState(state, AllAlive, id =>
        {
            asked.Add(id);
            return id == "a" ? new LivePoolUsage(1500 * GiB, 700 * GiB) : null;
        });

        Assert.Equal((1500 * GiB, 700 * GiB), Figures(PoolOf(topology, "a", "p0")));
        Assert.Equal((2000 * GiB, 200 * GiB), Figures(PoolOf(topology, "a", "p1")));
        Assert.Equal((3000 * GiB, 300 * GiB), Figures(PoolOf(topology, "b", "pb")));
        Assert.Empty(NodeOf(topology, "c").Pools);
        Assert.Equal(["a", "b"], asked.Order(StringComparer.Ordinal)); // a node without pools is not asked

        var recorded = PlacementTopology.FromState(state, AllAlive, liveUsage: null);
        Assert.Equal((1000 * GiB, 100 * GiB), Figures(PoolOf(recorded, "a", "p0")));
    }

    [Fact]
    public void Overcommit_ratio_and_full_fraction_are_set_on_every_pool()
    {
        var state = Build(
            Node("a") with { Pools = [Pool("p0", totalGiB: 100), Pool("p1", totalGiB: 100)] },
            Node("b"));

        var defaults = PlacementTopology.FromState(state, AllAlive);
        var given = PlacementTopology.FromState(state, AllAlive, overcommitRatio: 1.5, fullFraction: 0.8);

        Assert.All(defaults.Nodes.SelectMany(n => n.Pools), p => Assert.Equal((4.0, 0.95), (p.OvercommitRatio, p.FullFraction)));
        Assert.All(given.Nodes.SelectMany(n => n.Pools), p => Assert.Equal((1.5, 0.8), (p.OvercommitRatio, p.FullFraction)));
        Assert.Equal(150 * GiB, PoolOf(given, "a", "p1").ProvisionableLimitBytes);
    }

    [Fact]
    public void Nodes_keep_their_identity_addresses_zone_rack_labels_and_io_priority_in_id_order()
    {
        var state = Build(
            Node("c"),
            Node("a", name: "host-a", zone: "z2", labels: ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("disk", "nvme")])) with
            {
                Rack = "r7",
                Addresses = ["10.0.0.1:9501", "a.example"],
                Pools = [Pool("p0", totalGiB: 100) with { IoPriority = IoPriority.Low }],
            },
            Node("b"));

        var topology = PlacementTopology.FromState(state, AllAlive);

        Assert.Equal(["a", "b", "c"], topology.Nodes.Select(n => n.Id));
        var a = topology.Nodes[0];
        Assert.Equal(("host-a", "z2", "r7"), (a.Name, a.Zone, a.Rack));
        Assert.Equal(["10.0.0.1:9501", "a.example"], a.Addresses);
        Assert.Equal("nvme", a.Labels["disk"]);
        Assert.Equal(("p0", IoPriority.Low), (a.Pools[0].Id, a.Pools[0].IoPriority));
    }

    [Fact]
    public void Placement_over_the_state_skips_maintenance_decommissioning_and_dead_nodes()
    {
        var state = Build(
            Node("a", zone: "z1"),
            Node("b", zone: "z2"),
            Node("c", zone: "z3"),
            Node("maint", zone: "z4"),
            Node("decom", zone: "z5"),
            Node("dead", zone: "z6"),
            Status("maint", S.NodeStatus.Maintenance),
            Status("decom", S.NodeStatus.Decommissioning));
        var topology = PlacementTopology.FromState(state, id => id != "dead");

        var placed = PlacementEngine.Place(topology, new PlacementRequest("v", 3, 10 * GiB));

        Assert.True(placed.Succeeded, placed.ToString());
        Assert.Equal(["a", "b", "c"], placed.Replicas.Select(r => r.NodeId).Order(StringComparer.Ordinal));

        var withoutC = PlacementTopology.FromState(state, id => id is not ("dead" or "c"));
        var refused = PlacementEngine.Place(withoutC, new PlacementRequest("v", 3, 10 * GiB));
        Assert.Equal(PlacementError.NotEnoughNodes, refused.Failure?.Error);
    }

    [Fact]
    public void Placement_sees_the_provisioning_the_state_records()
    {
        var state = Build(
            Node("a") with { Pools = [Pool("pa", totalGiB: 100)] },
            Node("b") with { Pools = [Pool("pb", totalGiB: 100)] },
            Volume("big", repl: 1, size: 90 * GiB) with { Replicas = [On("a", "pa", S.ReplicaState.InSync)] });
        var topology = PlacementTopology.FromState(state, AllAlive, overcommitRatio: 1.0);

        var one = PlacementEngine.Place(topology, new PlacementRequest("v", 1, 20 * GiB));
        var two = PlacementEngine.Place(topology, new PlacementRequest("v", 2, 20 * GiB));

        Assert.Equal(new ReplicaLocation("b", "pb"), Assert.Single(one.Replicas));
        Assert.Equal(PlacementError.NoCapacity, two.Failure?.Error); // a has 10 GiB left, not 20
    }

    [Fact]
    public void A_pool_gossip_reports_full_takes_no_new_replica_although_its_record_has_room()
    {
        var state = Build(
            Node("a") with { Pools = [Pool("pa", totalGiB: 10_000)] },
            Node("b") with { Pools = [Pool("pb", totalGiB: 100)] });
        LivePoolUsage? Usage(string id) => id == "a" ? new LivePoolUsage(10_000 * GiB, 9_500 * GiB) : null;

        var live = PlacementEngine.Place(PlacementTopology.FromState(state, AllAlive, Usage), new PlacementRequest("v", 1, GiB));
        var recorded = PlacementEngine.Place(PlacementTopology.FromState(state, AllAlive), new PlacementRequest("v", 1, GiB));

        Assert.Equal("b", Assert.Single(live.Replicas).NodeId); // 95 % used reaches the default full fraction
        Assert.Equal("a", Assert.Single(recorded.Replicas).NodeId); // by the record, a has far more room
    }

    [Fact]
    public void An_empty_state_gives_an_empty_topology()
    {
        Assert.Empty(PlacementTopology.FromState(S.ClusterState.Empty, AllAlive).Nodes);
    }

    [Theory]
    [InlineData(0.0, 0.95)]
    [InlineData(-1.0, 0.95)]
    [InlineData(double.NaN, 0.95)]
    [InlineData(double.PositiveInfinity, 0.95)]
    [InlineData(4.0, 0.0)]
    [InlineData(4.0, 1.01)]
    [InlineData(4.0, double.NaN)]
    public void Out_of_range_ratios_are_refused(double overcommitRatio, double fullFraction)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() =>
            PlacementTopology.FromState(S.ClusterState.Empty, AllAlive, overcommitRatio: overcommitRatio, fullFraction: fullFraction));
    }

    [Fact]
    public void Null_state_or_liveness_is_refused()
    {
        Assert.Throws<ArgumentNullException>(() => PlacementTopology.FromState(null!, AllAlive));
        Assert.Throws<ArgumentNullException>(() => PlacementTopology.FromState(S.ClusterState.Empty, null!));
        Assert.Empty(PlacementTopology.FromState(S.ClusterState.Empty, AllAlive, fullFraction: 1.0).Nodes);
    }

    private static S.PoolSummary Pool(string id, long totalGiB, long usedGiB = 0, long reportedProvisionedGiB = 0) =>
        new() { Id = id, IoPriority = IoPriority.Medium, TotalBytes = totalGiB * GiB, UsedBytes = usedGiB * GiB, ProvisionedBytes = reportedProvisionedGiB * GiB };

    private static S.ReplicaInfo On(string node, string pool, S.ReplicaState state) => new() { NodeId = node, PoolId = pool, State = state };

    private static S.SetNodeStatus Status(string node, S.NodeStatus status) => new() { NodeId = node, Status = status, Timestamp = T0 };

    private static NodeInfo NodeOf(ClusterTopology topology, string id) => topology.Nodes.Single(n => n.Id == id);

    private static PoolInfo PoolOf(ClusterTopology topology, string node, string pool) => NodeOf(topology, node).Pools.Single(p => p.Id == pool);

    private static (long Total, long Used) Figures(PoolInfo pool) => (pool.TotalBytes, pool.UsedBytes);
}
