using Slab.Cluster.Placement;
using Slab.Store;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.Placement;

/// <summary>
/// 16,000 volumes on 1,000 nodes (10 zones x 5 racks x 20 nodes), committing each placement into
/// the topology before the next, as the leader would. Checks invariants and that load spreads;
/// timing is for <c>bench/</c>, not asserted here.
/// </summary>
public sealed class PlacementScaleTests(ITestOutputHelper output)
{
    private const long GiB = 1L << 30;
    private const long TiB = 1L << 40;

    [Fact]
    public void Sixteen_thousand_volumes_on_a_thousand_nodes_spread_over_zones_racks_and_nodes()
    {
        var random = new Random(1000);
        var topology = LargeTopology(random, offlineEvery: 50);
        var zoneOf = topology.Nodes.ToDictionary(n => n.Id, n => n.Zone);
        var rackOf = topology.Nodes.ToDictionary(n => n.Id, n => (n.Zone, n.Rack));
        var offline = topology.Nodes.Where(n => n.Status != NodeStatus.Online).Select(n => n.Id).ToHashSet();
        var replicasPerNode = new Dictionary<string, int>();

        for (var v = 0; v < 16_000; v++)
        {
            var repl = (v % 3) + 1;
            var size = random.NextInt64(1, 200) * GiB;
            var request = new PlacementRequest($"vol-{v:x8}", repl, size);
            var result = new PlacementEngine(topology).Place(request);

            Assert.True(result.Succeeded, $"volume {v}: {result}");
            Assert.Equal(repl, result.Replicas.Count);
            Assert.Equal(repl, result.Replicas.Select(r => r.NodeId).Distinct().Count());
            Assert.Equal(repl, result.Replicas.Select(r => zoneOf[r.NodeId]).Distinct().Count());
            Assert.Equal(repl, result.Replicas.Select(r => rackOf[r.NodeId]).Distinct().Count());
            foreach (var replica in result.Replicas)
            {
                Assert.DoesNotContain(replica.NodeId, offline);
                var pool = topology.Nodes.First(n => n.Id == replica.NodeId).Pools.Single(p => p.Id == replica.PoolId);
                Assert.True(pool.HasRoomFor(size));
                topology = topology.WithProvisioned(replica.NodeId, replica.PoolId, size);
                replicasPerNode[replica.NodeId] = replicasPerNode.GetValueOrDefault(replica.NodeId) + 1;
            }
        }

        var provisioned = topology.Nodes
            .Where(n => n.Status == NodeStatus.Online)
            .Select(n => n.Pools.Sum(p => p.ProvisionedBytes))
            .ToArray();
        var counts = topology.Nodes.Where(n => n.Status == NodeStatus.Online).Select(n => replicasPerNode.GetValueOrDefault(n.Id)).ToArray();
        output.WriteLine($"provisioned per node: min {provisioned.Min() / GiB} GiB, max {provisioned.Max() / GiB} GiB");
        output.WriteLine($"replicas per node: min {counts.Min()}, max {counts.Max()}");

        Assert.DoesNotContain(offline, replicasPerNode.ContainsKey);
        Assert.True(provisioned.Min() > 0);
        Assert.True((double)provisioned.Max() / provisioned.Min() < 1.2, $"max {provisioned.Max()} min {provisioned.Min()}");
    }

    [Fact]
    public void Without_committing_placements_the_volume_hash_still_spreads_identical_nodes()
    {
        var engine = new PlacementEngine(LargeTopology(new Random(7), offlineEvery: 0));
        var replicasPerNode = new Dictionary<string, int>();
        for (var v = 0; v < 16_000; v++)
        {
            var result = engine.Place(new PlacementRequest($"vol-{v}", (v % 3) + 1, 10 * GiB));
            Assert.True(result.Succeeded, result.ToString());
            foreach (var replica in result.Replicas)
            {
                replicasPerNode[replica.NodeId] = replicasPerNode.GetValueOrDefault(replica.NodeId) + 1;
            }
        }

        // 32,000 replicas on 1,000 identical nodes: 32 each on average.
        output.WriteLine($"replicas per node: min {replicasPerNode.Values.Min()}, max {replicasPerNode.Values.Max()}, nodes {replicasPerNode.Count}");
        Assert.Equal(1000, replicasPerNode.Count);
        Assert.InRange(replicasPerNode.Values.Max(), 32, 80);
    }

    /// <summary>1,000 identical nodes, 4 TiB each (overcommit 2), 10 zones x 5 racks; every <paramref name="offlineEvery"/>th node offline.</summary>
    internal static ClusterTopology LargeTopology(Random random, int offlineEvery)
    {
        var nodes = new NodeInfo[1000];
        for (var i = 0; i < nodes.Length; i++)
        {
            var zone = i % 10;
            var rack = i / 10 % 5;
            nodes[i] = new NodeInfo(
                $"node-{i:d4}",
                $"host-{i:d4}",
                [$"10.{zone}.{rack}.{i % 250}:9501"],
                $"zone-{zone}",
                $"rack-{rack}",
                new Dictionary<string, string> { ["zone"] = $"zone-{zone}" },
                offlineEvery > 0 && i % offlineEvery == 7 ? NodeStatus.Offline : NodeStatus.Online,
                [new PoolInfo("pool-0", IoPriority.Medium, 4 * TiB, random.NextInt64(0, 100 * GiB), 0, 2.0, 0.9)]);
        }

        return new ClusterTopology(nodes);
    }
}
