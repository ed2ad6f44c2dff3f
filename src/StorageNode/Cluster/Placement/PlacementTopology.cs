using System.Collections.Immutable;

namespace Slab.Cluster.Placement;

/// <summary>Live usage of a node's pool as gossip reports it. Bytes; taken as reported (a total of 0 or less makes the pool full).</summary>
/// <param name="TotalBytes">Usable capacity of the pool's drives now.</param>
/// <param name="UsedBytes">Bytes allocated on the drives now.</param>
public readonly record struct LivePoolUsage(long TotalBytes, long UsedBytes);

/// <summary>
/// Turns the Raft-replicated cluster state into the placement engine's input. Pure: reads the state
/// and the two callbacks, never changes anything. The state records what the cluster decided (nodes,
/// their operator status, pools, volumes and replicas); liveness and live usage come from gossip, so
/// the leader passes them in.
/// </summary>
public static class PlacementTopology
{
    /// <summary>
    /// The nodes of <paramref name="state"/> as placement sees them, in node id order.
    /// <list type="bullet">
    /// <item>Status: <see cref="NodeStatus.Maintenance"/> and <see cref="NodeStatus.Decommissioning"/> from the state
    /// (operator decisions; <paramref name="isAlive"/> is not asked); otherwise <see cref="NodeStatus.Online"/> when
    /// <paramref name="isAlive"/>(node id) is true, else <see cref="NodeStatus.Offline"/> — gossip is fresher than a
    /// recorded Offline, so a node recorded Offline that gossip reports alive is Online. An unknown recorded status is Offline.</item>
    /// <item>Pools: the node's recorded pools, in order. <see cref="PoolInfo.ProvisionedBytes"/> is the sum of
    /// <see cref="State.VolumeSpec.SizeBytes"/> over the state's replicas (in any replica state) on that node and pool,
    /// computed from the volumes, never taken from the node's report (saturating at <see cref="long.MaxValue"/>).
    /// Replicas on pools the node no longer reports are not counted anywhere.</item>
    /// <item>Total and used bytes: from <paramref name="liveUsage"/>(node id) for the node's first pool when it returns
    /// a value (asked once per node that has a pool), else from the recorded <see cref="State.PoolSummary"/>.</item>
    /// <item><paramref name="overcommitRatio"/> and <paramref name="fullFraction"/> on every pool.</item>
    /// </list>
    /// O(nodes + pools + replicas), one allocation per node and pool plus two index arrays; the callbacks run on the caller's thread.
    /// </summary>
    /// <param name="isAlive">Liveness by node id (gossip); called once per node not in maintenance or decommissioning.</param>
    /// <param name="liveUsage">Live usage of a node's first pool by node id; null, or a null answer, uses the recorded figures.</param>
    /// <param name="overcommitRatio">Provisioned bytes may reach total x this; finite and &gt; 0 (slabd's <c>--overcommit-ratio</c>).</param>
    /// <param name="fullFraction">A pool whose used / total reaches this takes no new replica; in (0, 1].</param>
    /// <exception cref="ArgumentNullException"><paramref name="state"/> or <paramref name="isAlive"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="overcommitRatio"/> or <paramref name="fullFraction"/> is out of range.</exception>
    public static ClusterTopology FromState(
        State.ClusterState state,
        Func<string, bool> isAlive,
        Func<string, LivePoolUsage?>? liveUsage = null,
        double overcommitRatio = 4.0,
        double fullFraction = 0.95)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(isAlive);
        if (!double.IsFinite(overcommitRatio) || overcommitRatio <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(overcommitRatio), overcommitRatio, "The overcommit ratio must be a finite number greater than 0.");
        }

        if (!(fullFraction > 0 && fullFraction <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(fullFraction), fullFraction, "The full fraction must be greater than 0 and at most 1.");
        }

        // Node i's pools occupy provisioned[poolStart[i] .. poolStart[i + 1]).
        var count = state.Nodes.Count;
        var recorded = new State.NodeInfo[count];
        var poolStart = new int[count + 1];
        var indexById = new Dictionary<string, int>(count, StringComparer.Ordinal);
        var n = 0;
        foreach (var (id, node) in state.Nodes)
        {
            recorded[n] = node;
            indexById[id] = n;
            poolStart[n + 1] = poolStart[n] + PoolsOf(node).Length;
            n++;
        }

        var provisioned = new long[poolStart[count]];
        foreach (var (_, volume) in state.Volumes)
        {
            var size = volume.Spec.SizeBytes;
            var replicas = volume.Replicas;
            if (replicas.IsDefault)
            {
                continue;
            }

            foreach (var replica in replicas)
            {
                if (!indexById.TryGetValue(replica.NodeId, out var node))
                {
                    continue;
                }

                var pools = PoolsOf(recorded[node]);
                for (var p = 0; p < pools.Length; p++)
                {
                    if (string.Equals(pools[p].Id, replica.PoolId, StringComparison.Ordinal))
                    {
                        ref var sum = ref provisioned[poolStart[node] + p];
                        sum = sum > long.MaxValue - size ? long.MaxValue : sum + size;
                        break;
                    }
                }
            }
        }

        var nodes = new NodeInfo[count];
        for (var i = 0; i < count; i++)
        {
            var node = recorded[i];
            var pools = PoolsOf(node);
            var live = liveUsage is not null && pools.Length > 0 ? liveUsage(node.Id) : null;
            var infos = new PoolInfo[pools.Length];
            for (var p = 0; p < pools.Length; p++)
            {
                var pool = pools[p];
                var (total, used) = p == 0 && live is { } usage ? (usage.TotalBytes, usage.UsedBytes) : (pool.TotalBytes, pool.UsedBytes);
                infos[p] = new PoolInfo(pool.Id, pool.IoPriority, total, used, provisioned[poolStart[i] + p], overcommitRatio, fullFraction);
            }

            nodes[i] = new NodeInfo(
                node.Id,
                node.Name,
                node.Addresses.IsDefault ? [] : node.Addresses,
                node.Zone,
                node.Rack,
                node.Labels,
                StatusOf(node, isAlive),
                infos);
        }

        return new ClusterTopology(nodes);
    }

    /// <summary>The state's status mapped explicitly: the two enums share names, not a contract.</summary>
    private static NodeStatus StatusOf(State.NodeInfo node, Func<string, bool> isAlive) => node.Status switch
    {
        State.NodeStatus.Maintenance => NodeStatus.Maintenance,
        State.NodeStatus.Decommissioning => NodeStatus.Decommissioning,
        State.NodeStatus.Online or State.NodeStatus.Offline => isAlive(node.Id) ? NodeStatus.Online : NodeStatus.Offline,
        _ => NodeStatus.Offline,
    };

    private static ImmutableArray<State.PoolSummary> PoolsOf(State.NodeInfo node) => node.Pools.IsDefault ? [] : node.Pools;
}
