using Slab.Cluster.Placement;
using Slab.Store;
using Xunit;
using static Slab.Tests.Placement.PlacementTestData;

namespace Slab.Tests.Placement;

/// <summary>One test or a few per placement rule, on hand-made topologies.</summary>
public sealed class PlacementRuleTests
{
    [Fact]
    public void Replicas_go_to_distinct_nodes_even_when_one_node_has_most_room()
    {
        var topology = Topology(
            Node("a", pools: Pool(totalGiB: 10_000)),
            Node("b"),
            Node("c"));

        var nodes = PlaceOk(topology, Request(3));

        Assert.Equal(3, nodes.Distinct().Count());
        Assert.Equal("id-a", nodes[0]);
    }

    [Theory]
    [InlineData(NodeStatus.Offline)]
    [InlineData(NodeStatus.Maintenance)]
    [InlineData(NodeStatus.Decommissioning)]
    public void Only_online_nodes_get_replicas(NodeStatus status)
    {
        var topology = Topology(
            Node("big", status: status, pools: Pool(totalGiB: 10_000)),
            Node("small", pools: Pool(totalGiB: 20)));

        Assert.Equal(["id-small"], PlaceOk(topology, Request(1)));
    }

    [Fact]
    public void A_pool_qualifies_up_to_exactly_its_provisioning_limit()
    {
        var exact = Topology(Node("a", pools: Pool(totalGiB: 100, provisionedGiB: 90)));
        Assert.Equal(["id-a"], PlaceOk(exact, Request(1, sizeGiB: 10)));

        var oneByteOver = Topology(Node("a", pools: Pool(totalGiB: 100, provisionedGiB: 90) with { ProvisionedBytes = (90 * GiB) + 1 }));
        PlaceFails(oneByteOver, Request(1, sizeGiB: 10), PlacementError.NoCapacity);
    }

    [Fact]
    public void Overcommit_raises_the_provisioning_limit()
    {
        var topology = Topology(Node("a", pools: Pool(totalGiB: 100, provisionedGiB: 150, overcommit: 2.0)));

        Assert.Equal(["id-a"], PlaceOk(topology, Request(1, sizeGiB: 50)));
        PlaceFails(topology, Request(1, sizeGiB: 51), PlacementError.NoCapacity);
    }

    [Fact]
    public void A_pool_used_up_to_its_full_fraction_takes_nothing_however_little_is_provisioned()
    {
        var full = Topology(Node("a", pools: Pool(totalGiB: 100, usedGiB: 90, fullFraction: 0.9)));
        PlaceFails(full, Request(1, sizeGiB: 1), PlacementError.NoCapacity);

        var almost = Topology(Node("a", pools: Pool(totalGiB: 100, usedGiB: 89, fullFraction: 0.9)));
        Assert.Equal(["id-a"], PlaceOk(almost, Request(1, sizeGiB: 1)));

        var empty = Topology(Node("a", pools: Pool(totalGiB: 0)));
        PlaceFails(empty, Request(1, sizeGiB: 1), PlacementError.NoCapacity);
    }

    [Fact]
    public void The_node_selector_matches_ids_names_and_addresses_case_insensitively()
    {
        var topology = Topology(
            Node("a", pools: Pool(totalGiB: 1000)),
            Node("b") with { Addresses = ["10.0.0.2:9501"] },
            Node("c") with { Addresses = ["[fd00::3]:9501"] },
            Node("d"));

        Assert.Equal(["id-d"], PlaceOk(topology, Request(1) with { NodeSelector = ["ID-D"] }));
        Assert.Equal(["id-d"], PlaceOk(topology, Request(1) with { NodeSelector = ["D"] }));
        Assert.Equal(["id-b"], PlaceOk(topology, Request(1) with { NodeSelector = ["10.0.0.2:9501"] }));
        Assert.Equal(["id-b"], PlaceOk(topology, Request(1) with { NodeSelector = ["10.0.0.2"] }));
        Assert.Equal(["id-c"], PlaceOk(topology, Request(1) with { NodeSelector = ["fd00::3"] }));
        Assert.Equal(["id-b", "id-c"], PlaceOk(topology, Request(2) with { NodeSelector = ["b", "id-c", "10.0.0.2"] }).Order());
    }

    [Fact]
    public void Required_labels_must_all_match_exactly()
    {
        var topology = Topology(
            Node("none", pools: Pool(totalGiB: 1000)),
            Node("wrong", labels: Labels("tier=slow", "ssd=true"), pools: Pool(totalGiB: 1000)),
            Node("half", labels: Labels("tier=fast"), pools: Pool(totalGiB: 1000)),
            Node("both", labels: Labels("tier=fast", "ssd=true", "extra=1")));

        var request = Request(1) with { RequiredLabels = Labels("tier=fast", "ssd=true") };

        Assert.Equal(["id-both"], PlaceOk(topology, request));
    }

    [Fact]
    public void Allowed_zones_and_racks_confine_replicas_and_they_still_spread_within_them()
    {
        var topology = Topology(
            Node("a1", "z1", "r1", pools: Pool(totalGiB: 5000)),
            Node("a2", "z1", "r2", pools: Pool(totalGiB: 4000)),
            Node("b1", "z2", "r1", pools: Pool(totalGiB: 100)),
            Node("c1", "z3", "r1", pools: Pool(totalGiB: 50)));

        Assert.Equal(["id-b1", "id-c1"], PlaceOk(topology, Request(2) with { Zones = ["z2", "z3"] }));
        Assert.Equal(["id-a2"], PlaceOk(topology, Request(1) with { Racks = ["r2"] }));
        Assert.Equal(["id-a1"], PlaceOk(topology, Request(1) with { Zones = ["z1"], Racks = ["r1"] }));

        var message = PlaceFails(topology, Request(2) with { Zones = ["z1"], Racks = ["r1"] }, PlacementError.LabelsUnmatched);
        Assert.Contains("in zone z1 in rack r1", message, StringComparison.Ordinal);
        Assert.Contains("b1 (zone z2, rack r1)", message, StringComparison.Ordinal);
        Assert.Contains("outside the allowed zones and racks", message, StringComparison.Ordinal);
        Assert.Contains("allow more zones or racks", message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_preferred_node_gets_the_first_replica_when_it_qualifies_and_the_rest_spread_from_it()
    {
        var topology = Topology(
            Node("a1", "z1", "r1", pools: Pool(totalGiB: 5000)),
            Node("a2", "z1", "r2", pools: Pool(totalGiB: 50)),
            Node("b1", "z2", "r1", pools: Pool(totalGiB: 4000)),
            Node("c1", "z3", "r1", pools: Pool(totalGiB: 3000)),
            Node("down", "z3", "r2", status: NodeStatus.Offline, pools: Pool(totalGiB: 9000)));

        Assert.Equal(["id-a2", "id-b1", "id-c1"], PlaceOk(topology, Request(3) with { PreferredNode = "A2" })); // names match case-insensitively
        Assert.Equal(["id-c1"], PlaceOk(topology, Request(1) with { PreferredNode = "id-c1" }));
        Assert.Equal(["id-a1"], PlaceOk(topology, Request(1) with { PreferredNode = "down" })); // offline: no preference
        Assert.Equal(["id-a1"], PlaceOk(topology, Request(1) with { PreferredNode = "nobody" }));
        Assert.Equal(["id-b1"], PlaceOk(topology, Request(1) with { PreferredNode = "a2", Zones = ["z2"] })); // outside the zones: no preference
    }

    [Fact]
    public void Replicas_spread_over_zones_before_free_space()
    {
        // Zone z1 has the roomiest nodes; still one replica per zone.
        var topology = Topology(
            Node("a1", "z1", "r1", pools: Pool(totalGiB: 5000)),
            Node("a2", "z1", "r2", pools: Pool(totalGiB: 4000)),
            Node("a3", "z1", "r3", pools: Pool(totalGiB: 3000)),
            Node("b1", "z2", "r1", pools: Pool(totalGiB: 100)),
            Node("c1", "z3", "r1", pools: Pool(totalGiB: 50)));

        Assert.Equal(["id-a1", "id-b1", "id-c1"], PlaceOk(topology, Request(3)));
    }

    [Fact]
    public void Within_the_zones_replicas_spread_over_racks()
    {
        var topology = Topology(
            Node("a", "z1", "r1", pools: Pool(totalGiB: 5000)),
            Node("b", "z1", "r1", pools: Pool(totalGiB: 4000)),
            Node("c", "z1", "r2", pools: Pool(totalGiB: 100)),
            Node("d", "z2", "r1", pools: Pool(totalGiB: 50)));

        // z1 and z2 first, then a new rack (z1/r2) rather than the roomier b in z1/r1.
        Assert.Equal(["id-a", "id-d", "id-c"], PlaceOk(topology, Request(3)));
    }

    [Fact]
    public void Racks_are_told_apart_by_zone_and_rack()
    {
        // After z1/r1 and z2/r2, "r2" in z1 is still a new rack: x beats the roomier y on z1/r1.
        var topology = Topology(
            Node("a", "z1", "r1", pools: Pool(totalGiB: 5000)),
            Node("y", "z1", "r1", pools: Pool(totalGiB: 4000)),
            Node("b", "z2", "r2", pools: Pool(totalGiB: 100)),
            Node("x", "z1", "r2", pools: Pool(totalGiB: 50)));

        Assert.Equal(["id-a", "id-b", "id-x"], PlaceOk(topology, Request(3)));
    }

    [Fact]
    public void Nodes_without_a_zone_count_as_one_zone()
    {
        var topology = Topology(
            Node("a", pools: Pool(totalGiB: 5000)),
            Node("b", pools: Pool(totalGiB: 4000)),
            Node("c", "z1", pools: Pool(totalGiB: 100)));

        Assert.Equal(["id-a", "id-c"], PlaceOk(topology, Request(2)));
    }

    [Fact]
    public void Placed_replicas_count_toward_the_spread_and_are_not_chosen_again()
    {
        var topology = Topology(
            Node("a", "z1", "r1"),
            Node("b", "z1", "r2", pools: Pool(totalGiB: 5000)),
            Node("c", "z2", "r1", pools: Pool(totalGiB: 5000)),
            Node("d", "z3", "r1", pools: Pool(totalGiB: 100)));

        var request = Request(3) with { PlacedReplicas = [new("id-a", "pool-0"), new("id-c", "pool-0")] };

        // z1 and z2 are covered; z3 wins over the roomier b in z1.
        Assert.Equal(["id-d"], PlaceOk(topology, request));
    }

    [Fact]
    public void Placed_replicas_on_nodes_that_left_the_cluster_are_accepted()
    {
        var topology = Topology(Node("a"), Node("b"));

        var request = Request(2) with { PlacedReplicas = [new("id-gone", "pool-0")] };

        Assert.Single(PlaceOk(topology, request));
    }

    [Fact]
    public void Avoided_nodes_are_never_chosen()
    {
        var topology = Topology(
            Node("a", pools: Pool(totalGiB: 5000)),
            Node("b", pools: Pool(totalGiB: 4000)),
            Node("c"));

        var request = Request(2) with { AvoidNodes = ["id-a", "id-unknown"] };

        Assert.Equal(["id-b", "id-c"], PlaceOk(topology, request));
    }

    [Fact]
    public void The_requested_io_priority_beats_free_space()
    {
        var topology = Topology(
            Node("low", pools: Pool(totalGiB: 5000, priority: IoPriority.Low)),
            Node("high", pools: Pool(totalGiB: 100, priority: IoPriority.High)));

        Assert.Equal(["id-high"], PlaceOk(topology, Request(1) with { IoPriority = IoPriority.High }));
        Assert.Equal(["id-low"], PlaceOk(topology, Request(1) with { IoPriority = IoPriority.Low }));
        Assert.Equal(["id-low"], PlaceOk(topology, Request(1)));
    }

    [Fact]
    public void The_nearest_io_priority_wins_and_the_faster_on_a_tie()
    {
        var highAndLow = Topology(
            Node("low", pools: Pool(totalGiB: 5000, priority: IoPriority.Low)),
            Node("high", pools: Pool(totalGiB: 100, priority: IoPriority.High)));
        Assert.Equal(["id-high"], PlaceOk(highAndLow, Request(1) with { IoPriority = IoPriority.Medium }));

        var highAndMedium = Topology(
            Node("high", pools: Pool(totalGiB: 5000, priority: IoPriority.High)),
            Node("medium", pools: Pool(totalGiB: 100, priority: IoPriority.Medium)));
        Assert.Equal(["id-medium"], PlaceOk(highAndMedium, Request(1) with { IoPriority = IoPriority.Low }));
    }

    [Fact]
    public void Within_a_node_the_pool_of_the_requested_priority_is_chosen()
    {
        var topology = Topology(Node(
            "a",
            pools: [Pool("slow", totalGiB: 5000, priority: IoPriority.Low), Pool("fast", totalGiB: 100, priority: IoPriority.High)]));

        var fast = PlacementEngine.Place(topology, Request(1) with { IoPriority = IoPriority.High });
        Assert.Equal(new ReplicaLocation("id-a", "fast"), Assert.Single(fast.Replicas));

        var any = PlacementEngine.Place(topology, Request(1));
        Assert.Equal(new ReplicaLocation("id-a", "slow"), Assert.Single(any.Replicas));

        // The fast pool is too small for 200 GiB: the slow one takes it.
        var big = PlacementEngine.Place(topology, Request(1, sizeGiB: 200) with { IoPriority = IoPriority.High });
        Assert.Equal(new ReplicaLocation("id-a", "slow"), Assert.Single(big.Replicas));
    }

    [Fact]
    public void The_most_free_provisionable_space_wins_then_the_least_provisioned_fraction()
    {
        var topology = Topology(
            Node("a", pools: Pool(totalGiB: 100, provisionedGiB: 60)),
            Node("b", pools: Pool(totalGiB: 100, provisionedGiB: 20)),
            Node("c", pools: Pool(totalGiB: 100, provisionedGiB: 50, overcommit: 1.2)));
        Assert.Equal(["id-b", "id-c", "id-a"], PlaceOk(topology, Request(3)));

        // Same 50 GiB free: 50% provisioned beats 75%.
        var tie = Topology(
            Node("a", pools: Pool(totalGiB: 200, provisionedGiB: 150)),
            Node("b", pools: Pool(totalGiB: 100, provisionedGiB: 50)));
        Assert.Equal(["id-b"], PlaceOk(tie, Request(1)));
    }

    [Fact]
    public void Identical_nodes_share_many_volumes_evenly()
    {
        var nodes = Enumerable.Range(0, 10).Select(i => Node($"n{i}")).ToArray();
        var engine = new PlacementEngine(Topology(nodes));
        var counts = new Dictionary<string, int>();

        for (var v = 0; v < 2000; v++)
        {
            var result = engine.Place(Request(1, volume: $"vol-{v}"));
            var node = Assert.Single(result.Replicas).NodeId;
            counts[node] = counts.GetValueOrDefault(node) + 1;
        }

        Assert.Equal(10, counts.Count);
        Assert.All(counts.Values, count => Assert.InRange(count, 120, 280));
    }

    [Fact]
    public void The_same_inputs_give_the_same_result_whatever_the_node_order()
    {
        var nodes = Enumerable.Range(0, 12).Select(i => Node($"n{i}", $"z{i % 3}", $"r{i % 2}")).ToArray();
        var request = Request(3, volume: "vol-determinism");
        var expected = PlaceOk(Topology(nodes), request);

        var random = new Random(5);
        for (var i = 0; i < 20; i++)
        {
            var shuffled = nodes.ToArray();
            random.Shuffle(shuffled);
            Assert.Equal(expected, PlaceOk(Topology(shuffled), request));
        }
    }

    [Theory]
    [InlineData(0, 10, "repl must be 1, 2 or 3, not 0")]
    [InlineData(4, 10, "repl must be 1, 2 or 3, not 4")]
    [InlineData(1, 0, "the volume size must be positive, not 0 bytes")]
    public void Malformed_requests_are_refused(int repl, long sizeGiB, string message)
    {
        Assert.Equal(message, PlaceFails(Topology(Node("a")), Request(repl, sizeGiB), PlacementError.InvalidRequest));
    }

    [Fact]
    public void Requests_with_nothing_to_place_or_inconsistent_placed_replicas_are_refused()
    {
        var topology = Topology(Node("a"), Node("b"), Node("c"));

        Assert.Equal(
            "a volume id is required",
            PlaceFails(topology, Request(1, volume: " "), PlacementError.InvalidRequest));
        Assert.Equal(
            "volume vol-1 already has 2 replica(s) (id-a/pool-0, id-b/pool-0); repl 2 needs no new one",
            PlaceFails(topology, Request(2) with { PlacedReplicas = [new("id-a", "pool-0"), new("id-b", "pool-0")] }, PlacementError.InvalidRequest));
        Assert.Equal(
            "the placed replicas of volume vol-1 share node id-a; replicas must be on distinct nodes",
            PlaceFails(topology, Request(3) with { PlacedReplicas = [new("id-a", "pool-0"), new("id-a", "pool-1")] }, PlacementError.InvalidRequest));
    }

    [Fact]
    public void WithProvisioned_adds_to_one_pool_and_leaves_the_rest()
    {
        var topology = Topology(Node("a", pools: [Pool("p0"), Pool("p1")]), Node("b"));

        var updated = topology.WithProvisioned("id-a", "p1", 5 * GiB);

        Assert.Equal(5 * GiB, updated.Nodes[0].Pools[1].ProvisionedBytes);
        Assert.Equal(0, updated.Nodes[0].Pools[0].ProvisionedBytes);
        Assert.Same(topology.Nodes[1], updated.Nodes[1]);
        Assert.Equal(0, topology.Nodes[0].Pools[1].ProvisionedBytes);
        Assert.Same(topology, topology.WithProvisioned("id-zz", "p1", 1));
    }

    [Fact]
    public void Two_nodes_with_one_id_are_a_broken_topology()
    {
        Assert.Throws<ArgumentException>(() => new PlacementEngine(Topology(Node("a"), Node("a"))));
    }
}
