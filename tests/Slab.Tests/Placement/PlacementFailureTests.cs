using Slab.Cluster.Placement;
using Xunit;
using static Slab.Tests.Placement.PlacementTestData;

namespace Slab.Tests.Placement;

/// <summary>Each kind of refusal, and that its message names what qualified and why the rest did not.</summary>
public sealed class PlacementFailureTests
{
    [Fact]
    public void Too_few_nodes_with_room_lists_the_qualifying_nodes_and_every_reason()
    {
        var topology = Topology(
            Node("node-a", "z1"),
            Node("node-b", "z1", "r7"),
            Node("node-c", "z2", status: NodeStatus.Offline),
            Node("node-d", "z2", status: NodeStatus.Maintenance),
            Node("node-e", "z3", pools: Pool(totalGiB: 100, usedGiB: 95)));

        var message = PlaceFails(topology, Request(3), PlacementError.NoCapacity);

        Assert.Equal(
            "repl 3 needs 3 online nodes with room for 10 GiB; only 2 qualify: node-a (zone z1) and node-b (zone z1, rack r7); "
            + "node-c is offline, node-d is in maintenance, node-e's pools are full "
            + "(free or add capacity on these nodes, or lower the size or repl)",
            message);
    }

    [Fact]
    public void Too_few_online_nodes_is_not_enough_nodes()
    {
        var topology = Topology(
            Node("node-a"),
            Node("node-b", status: NodeStatus.Offline),
            Node("node-c", status: NodeStatus.Decommissioning));

        var message = PlaceFails(topology, Request(2), PlacementError.NotEnoughNodes);

        Assert.Equal(
            "repl 2 needs 2 online nodes with room for 10 GiB; only 1 qualifies: node-a; node-b is offline, "
            + "node-c is being decommissioned (bring nodes online or lower repl)",
            message);
    }

    [Fact]
    public void A_cluster_smaller_than_repl_is_not_enough_nodes()
    {
        var message = PlaceFails(Topology(Node("node-a"), Node("node-b")), Request(3, sizeGiB: 1), PlacementError.NotEnoughNodes);

        Assert.Equal(
            "repl 3 needs 3 online nodes with room for 1 GiB; only 2 qualify: node-a and node-b (bring nodes online or lower repl)",
            message);
    }

    [Fact]
    public void Pools_that_are_too_small_say_how_much_they_could_take()
    {
        var topology = Topology(
            Node("node-a", pools: Pool(totalGiB: 100, provisionedGiB: 95)),
            Node("node-b", pools: Pool(totalGiB: 100, provisionedGiB: 99)),
            Node("node-c", pools: Pool(totalGiB: 100, provisionedGiB: 120)),
            Node("node-d") with { Pools = [] });

        var message = PlaceFails(topology, Request(1), PlacementError.NoCapacity);

        Assert.Equal(
            "repl 1 needs 1 online node with room for 10 GiB; none qualifies; node-d has no pools, "
            + "node-a (5 GiB provisionable), node-b (1 GiB provisionable) and node-c (0 B provisionable) have too little provisionable space "
            + "(free or add capacity on these nodes, or lower the size or repl)",
            message);
    }

    [Fact]
    public void Many_nodes_with_one_reason_are_counted_not_all_named()
    {
        var nodes = Enumerable.Range(0, 9).Select(i => Node($"n{i}", status: NodeStatus.Offline)).Append(Node("up")).ToArray();

        var message = PlaceFails(Topology(nodes), Request(2), PlacementError.NotEnoughNodes);

        Assert.Contains("only 1 qualifies: up; 9 nodes (n0, n1, n2, n3 and 5 more) are offline", message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_node_selector_entry_matching_no_node_is_refused_by_name()
    {
        var topology = Topology(Node("node-a"), Node("node-b"));

        var message = PlaceFails(topology, Request(1) with { NodeSelector = ["node-a", "nod-b", "10.9.9.9"] }, PlacementError.NodeSelectorUnmatched);

        Assert.Equal(
            "--nodes entries 'nod-b', '10.9.9.9' match no node id, name or address; the cluster's nodes are node-a and node-b",
            message);
    }

    [Fact]
    public void A_node_selector_naming_too_few_nodes_is_refused()
    {
        var topology = Topology(Node("node-a"), Node("node-b"), Node("node-c", status: NodeStatus.Offline), Node("node-d"));

        var message = PlaceFails(topology, Request(3) with { NodeSelector = ["node-a", "node-c"] }, PlacementError.NodeSelectorUnmatched);

        Assert.Equal(
            "repl 3 needs 3 online nodes with room for 10 GiB among --nodes node-a,node-c; only 1 qualifies: node-a; "
            + "node-b and node-d are not in --nodes, node-c is offline (name more nodes in --nodes or lower repl)",
            message);
    }

    [Fact]
    public void Enough_selected_nodes_of_which_too_few_are_online_is_not_enough_nodes()
    {
        var topology = Topology(Node("node-a"), Node("node-b", status: NodeStatus.Offline), Node("node-c"));

        PlaceFails(topology, Request(2) with { NodeSelector = ["node-a", "node-b"] }, PlacementError.NotEnoughNodes);
    }

    [Fact]
    public void Too_few_labeled_nodes_is_labels_unmatched()
    {
        var topology = Topology(
            Node("node-a", labels: Labels("tier=fast")),
            Node("node-b", labels: Labels("tier=slow")),
            Node("node-c"));

        var message = PlaceFails(topology, Request(2) with { RequiredLabels = Labels("tier=fast") }, PlacementError.LabelsUnmatched);

        Assert.Equal(
            "repl 2 needs 2 online nodes with room for 10 GiB with label tier=fast; only 1 qualifies: node-a; "
            + "node-b and node-c lack the labels (label more nodes or lower repl)",
            message);
    }

    [Fact]
    public void A_replacement_says_where_the_volume_already_is_and_which_nodes_it_avoids()
    {
        var topology = Topology(
            Node("node-a", "z1"),
            Node("node-b", "z2"),
            Node("node-c", "z3", status: NodeStatus.Offline),
            Node("node-d", "z3"));

        var request = Request(3) with
        {
            PlacedReplicas = [new("id-node-a", "pool-0"), new("id-node-b", "pool-0")],
            AvoidNodes = ["id-node-d"],
        };
        var message = PlaceFails(topology, request, PlacementError.NotEnoughNodes);

        Assert.Equal(
            "1 more replica for repl 3 (placed on node-a, node-b) needs 1 online node with room for 10 GiB; none qualifies; "
            + "node-d is to be avoided, node-c is offline (bring nodes online or lower repl)",
            message);
    }

    [Fact]
    public void An_empty_cluster_is_not_enough_nodes()
    {
        var message = PlaceFails(Topology(), Request(1), PlacementError.NotEnoughNodes);

        Assert.Equal("repl 1 needs 1 online node with room for 10 GiB; none qualifies (bring nodes online or lower repl)", message);
    }
}
