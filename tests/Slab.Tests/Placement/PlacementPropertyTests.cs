using Slab.Cluster.Placement;
using Slab.Store;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.Placement;

/// <summary>
/// Random small topologies and requests, each checked against a separate, deliberately naive model
/// of the rules: eligibility node by node, and a brute-force search over all node subsets for the
/// best zone and rack spread.
/// </summary>
public sealed class PlacementPropertyTests(ITestOutputHelper output)
{
    private const long GiB = 1L << 30;
    private const string Ghost = "ghost-node";

    [Fact]
    public void Random_placements_match_the_rules_and_a_brute_force_optimum()
    {
        var outcomes = new Dictionary<string, int>();
        for (var seed = 0; seed < 2000; seed++)
        {
            var random = new Random(seed);
            var topology = RandomTopology(random);
            var engine = new PlacementEngine(topology);
            for (var r = 0; r < 5; r++)
            {
                var (request, selected) = RandomRequest(random, topology);
                var result = engine.Place(request);
                var context = $"seed {seed} request {r}: {Describe(topology)} / {Describe(request)} → {result}";
                var outcome = Check(topology, request, selected, result, context);
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                CheckDeterminism(topology, request, result, random, context);
            }
        }

        foreach (var (outcome, count) in outcomes.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{outcome}: {count}");
        }

        // The generator must exercise every outcome, and mostly successes.
        Assert.All(Enum.GetNames<PlacementError>(), name => Assert.True(outcomes.GetValueOrDefault(name) > 20, $"{name}: {outcomes.GetValueOrDefault(name)}"));
        Assert.True(outcomes["ok"] > 4000, $"ok: {outcomes["ok"]}");
    }

    private static string Check(ClusterTopology topology, PlacementRequest request, HashSet<string>? selected, PlacementResult result, string context)
    {
        if (request.ReplicaCount is < 1 or > 3 || request.SizeBytes <= 0)
        {
            Assert.True(result.Failure?.Error == PlacementError.InvalidRequest, context);
            return nameof(PlacementError.InvalidRequest);
        }

        var needed = request.ReplicaCount - request.PlacedReplicas.Count;
        var placedIds = request.PlacedReplicas.Select(p => p.NodeId).ToHashSet();
        var byId = topology.Nodes.ToDictionary(n => n.Id);

        if (request.NodeSelector.Contains(Ghost))
        {
            Assert.True(result.Failure?.Error == PlacementError.NodeSelectorUnmatched, context);
            Assert.Contains(Ghost, result.Failure.Message, StringComparison.Ordinal);
            return nameof(PlacementError.NodeSelectorUnmatched);
        }

        // The funnel, node by node: what survives each rule in turn.
        var open = topology.Nodes.Where(n => !placedIds.Contains(n.Id) && !request.AvoidNodes.Contains(n.Id)).ToList();
        var inSelector = open.Where(n => selected is null || selected.Contains(n.Id)).ToList();
        var labeled = inSelector.Where(n => request.RequiredLabels.All(l => n.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
        var online = labeled.Where(n => n.Status == NodeStatus.Online).ToList();
        var eligible = online.Where(n => n.Pools.Any(p => HasRoom(p, request.SizeBytes))).ToList();

        if (eligible.Count < needed)
        {
            var expected =
                selected is not null && inSelector.Count < needed ? PlacementError.NodeSelectorUnmatched
                : request.RequiredLabels.Count > 0 && labeled.Count < needed ? PlacementError.LabelsUnmatched
                : online.Count < needed ? PlacementError.NotEnoughNodes
                : PlacementError.NoCapacity;
            Assert.False(result.Succeeded, "brute force finds no placement but the engine did: " + context);
            Assert.Equal(expected, result.Failure.Error);
            Assert.Empty(result.Replicas);
            Assert.False(string.IsNullOrWhiteSpace(result.Failure.Message));
            return expected.ToString();
        }

        Assert.True(result.Succeeded, "a placement exists but the engine refused: " + context);
        var chosen = result.Replicas;
        Assert.Equal(needed, chosen.Count);
        Assert.Equal(needed, chosen.Select(c => c.NodeId).Distinct().Count());
        foreach (var replica in chosen)
        {
            var node = eligible.SingleOrDefault(n => n.Id == replica.NodeId);
            Assert.True(node is not null, $"{replica.NodeId} is not eligible: {context}");
            var pool = node.Pools.Single(p => p.Id == replica.PoolId);
            Assert.True(HasRoom(pool, request.SizeBytes), $"{replica} has no room: {context}");
            var bestKey = node.Pools.Where(p => HasRoom(p, request.SizeBytes)).Min(p => PriorityKey(p.IoPriority, request.IoPriority));
            Assert.True(PriorityKey(pool.IoPriority, request.IoPriority) == bestKey, $"{replica} is not the node's nearest-priority pool: {context}");
        }

        // Spread: as good as the best subset of eligible nodes, zones first, then racks.
        var placedNodes = request.PlacedReplicas.Where(p => byId.ContainsKey(p.NodeId)).Select(p => byId[p.NodeId]).ToList();
        var actual = Spread(placedNodes.Concat(chosen.Select(c => byId[c.NodeId])));
        var best = (Zones: -1, Racks: -1);
        foreach (var subset in Subsets(eligible, needed))
        {
            var spread = Spread(placedNodes.Concat(subset));
            if (spread.Zones > best.Zones || (spread.Zones == best.Zones && spread.Racks > best.Racks))
            {
                best = spread;
            }
        }

        Assert.True(best == actual, $"spread {actual}, brute force {best}: {context}");

        // With nothing placed, every node offers a new zone, so the first pick has the nearest priority of all.
        if (request.PlacedReplicas.Count == 0)
        {
            var nearest = eligible.Min(n => n.Pools.Where(p => HasRoom(p, request.SizeBytes)).Min(p => PriorityKey(p.IoPriority, request.IoPriority)));
            var first = byId[chosen[0].NodeId].Pools.Single(p => p.Id == chosen[0].PoolId);
            Assert.True(PriorityKey(first.IoPriority, request.IoPriority) == nearest, $"first pick is not of the nearest priority: {context}");
        }

        return "ok";
    }

    private static void CheckDeterminism(ClusterTopology topology, PlacementRequest request, PlacementResult result, Random random, string context)
    {
        var again = PlacementEngine.Place(topology, request);
        var shuffledNodes = topology.Nodes.ToArray();
        random.Shuffle(shuffledNodes);
        var shuffled = PlacementEngine.Place(new ClusterTopology(shuffledNodes), request);
        foreach (var other in new[] { again, shuffled })
        {
            Assert.True(result.Replicas.SequenceEqual(other.Replicas), $"{other} differs: {context}");
            Assert.Equal(result.Failure, other.Failure);
        }
    }

    /// <summary>The rule as written: provisioned + size ≤ total × overcommit, and used / total &lt; full fraction.</summary>
    private static bool HasRoom(PoolInfo pool, long size) =>
        pool.TotalBytes > 0
        && (double)pool.UsedBytes / pool.TotalBytes < pool.FullFraction
        && pool.ProvisionedBytes + (decimal)size <= Math.Floor(pool.TotalBytes * (decimal)pool.OvercommitRatio);

    private static int PriorityKey(IoPriority pool, IoPriority? wanted) =>
        wanted is null ? 0 : (Math.Abs((int)pool - (int)wanted.Value) * 2) + (pool > wanted.Value ? 1 : 0);

    private static (int Zones, int Racks) Spread(IEnumerable<NodeInfo> nodes)
    {
        var list = nodes.ToList();
        return (list.Select(n => n.Zone).Distinct().Count(), list.Select(n => (n.Zone, n.Rack)).Distinct().Count());
    }

    private static IEnumerable<List<NodeInfo>> Subsets(List<NodeInfo> nodes, int size, int start = 0)
    {
        if (size == 0)
        {
            yield return [];
            yield break;
        }

        for (var i = start; i <= nodes.Count - size; i++)
        {
            foreach (var rest in Subsets(nodes, size - 1, i + 1))
            {
                rest.Insert(0, nodes[i]);
                yield return rest;
            }
        }
    }

    private static ClusterTopology RandomTopology(Random random)
    {
        var count = random.Next(1, 13);
        var zones = random.Next(1, 5);
        var racks = random.Next(1, 4);
        var nodes = new NodeInfo[count];
        for (var i = 0; i < count; i++)
        {
            var poolCount = Pick(random, (5, 0), (75, 1), (20, 2));
            var pools = new PoolInfo[poolCount];
            for (var p = 0; p < poolCount; p++)
            {
                var total = random.Next(100) < 3 ? 0 : random.NextInt64(20 * GiB, 500 * GiB);
                pools[p] = new PoolInfo(
                    $"pool-{p}",
                    (IoPriority)random.Next(3),
                    total,
                    (long)(total * random.NextDouble()),
                    (long)(total * 1.3 * random.NextDouble()),
                    Pick(random, (50, 1.0), (30, 1.5), (20, 2.0)),
                    Pick(random, (30, 0.8), (50, 0.9), (20, 0.95)));
            }

            var labels = new Dictionary<string, string>();
            var tier = Pick(random, (40, "fast"), (30, "slow"), (30, (string?)null));
            if (tier is not null)
            {
                labels["tier"] = tier;
            }

            if (random.Next(2) == 0)
            {
                labels["ssd"] = "true";
            }

            nodes[i] = new NodeInfo(
                $"id-{random.Next(0x10000):x4}-{i}",
                $"node-{i}",
                [$"10.0.{i}.{random.Next(1, 250)}:9501"],
                random.Next(10) == 0 ? string.Empty : $"z{random.Next(zones)}",
                random.Next(10) == 0 ? string.Empty : $"r{random.Next(racks)}",
                labels,
                Pick(random, (70, NodeStatus.Online), (10, NodeStatus.Offline), (10, NodeStatus.Maintenance), (10, NodeStatus.Decommissioning)),
                pools);
        }

        return new ClusterTopology(nodes);
    }

    private static (PlacementRequest Request, HashSet<string>? Selected) RandomRequest(Random random, ClusterTopology topology)
    {
        var nodes = topology.Nodes;
        var repl = random.Next(1, 4);
        var placedCount = random.Next(100) < 60 ? 0 : random.Next(repl);
        var placed = new List<ReplicaLocation>();
        var shuffled = nodes.ToArray();
        random.Shuffle(shuffled);
        for (var i = 0; i < placedCount; i++)
        {
            placed.Add(i < shuffled.Length && random.Next(5) > 0
                ? new ReplicaLocation(shuffled[i].Id, "pool-0")
                : new ReplicaLocation($"id-gone-{i}", "pool-0"));
        }

        var avoid = random.Next(100) < 30
            ? Enumerable.Range(0, random.Next(1, 3)).Select(_ => nodes[random.Next(nodes.Count)].Id).Distinct().ToArray()
            : [];

        HashSet<string>? selected = null;
        var selector = new List<string>();
        if (random.Next(100) < 30)
        {
            selected = [];
            foreach (var node in nodes)
            {
                if (random.Next(2) == 0)
                {
                    selected.Add(node.Id);
                    selector.Add(random.Next(3) switch
                    {
                        0 => node.Id,
                        1 => node.Name.ToUpperInvariant(),
                        _ => random.Next(2) == 0 ? node.Addresses[0] : node.Addresses[0].Split(':')[0],
                    });
                }
            }

            if (random.Next(100) < 5 || selector.Count == 0)
            {
                selector.Add(Ghost);
            }
        }

        var labels = new Dictionary<string, string>();
        if (random.Next(100) < 25)
        {
            switch (random.Next(3))
            {
                case 0:
                    labels["tier"] = "fast";
                    break;
                case 1:
                    labels["ssd"] = "true";
                    break;
                default:
                    labels["tier"] = "fast";
                    labels["ssd"] = "true";
                    break;
            }
        }

        // A few malformed requests: the engine must refuse them, not throw.
        var size = random.NextInt64(1, 200 * GiB);
        switch (random.Next(100))
        {
            case 0:
                size = -random.Next(2);
                break;
            case 1:
                repl = random.Next(2) == 0 ? 0 : 4;
                break;
        }

        var request = new PlacementRequest($"vol-{random.Next()}", repl, size)
        {
            IoPriority = random.Next(100) < 30 ? null : (IoPriority)random.Next(3),
            NodeSelector = selector,
            RequiredLabels = labels,
            AvoidNodes = avoid,
            PlacedReplicas = placed,
        };
        return (request, selected);
    }

    private static T Pick<T>(Random random, params (int Weight, T Value)[] choices)
    {
        var roll = random.Next(choices.Sum(c => c.Weight));
        foreach (var (weight, value) in choices)
        {
            if (roll < weight)
            {
                return value;
            }

            roll -= weight;
        }

        throw new InvalidOperationException("unreachable");
    }

    private static string Describe(ClusterTopology topology) =>
        string.Join("; ", topology.Nodes.Select(n =>
            $"{n.Id}[{n.Zone}/{n.Rack} {n.Status} {string.Join(',', n.Labels.Select(l => $"{l.Key}={l.Value}"))} "
            + string.Join(' ', n.Pools.Select(p => $"{p.Id}:{p.IoPriority}:{p.TotalBytes / GiB}G/u{p.UsedBytes / GiB}/p{p.ProvisionedBytes / GiB}x{p.OvercommitRatio}<{p.FullFraction}"))
            + "]"));

    private static string Describe(PlacementRequest request) =>
        $"{request.VolumeId} repl {request.ReplicaCount} {request.SizeBytes / GiB}G prio {request.IoPriority} "
        + $"nodes [{string.Join(',', request.NodeSelector)}] labels [{string.Join(',', request.RequiredLabels.Select(l => $"{l.Key}={l.Value}"))}] "
        + $"avoid [{string.Join(',', request.AvoidNodes)}] placed [{string.Join(',', request.PlacedReplicas)}]";
}
