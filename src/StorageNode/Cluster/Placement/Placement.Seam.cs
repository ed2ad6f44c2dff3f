using System.Diagnostics.CodeAnalysis;
using Slab.Store;

namespace Slab.Cluster.Placement;

// Replica placement: which nodes and pools get the replicas of a volume. Pure logic over a snapshot
// of the cluster state (no I/O, no Raft, no clock); the leader's reconcilers and the volume create
// path feed it from the Raft-replicated state and commit what it returns. Rules, in order:
//   1. distinct nodes always; nodes to avoid and nodes already holding a replica are never chosen;
//   2. only Online nodes;
//   3. a pool qualifies when provisioned + size <= total x overcommit and used / total < full fraction;
//   4. the node selector (--nodes) and the required labels;
//   5. spread: as many distinct zones as possible among all replicas (placed and new), then as many
//      distinct racks;
//   6. the pool whose io priority is the requested one, else the nearest (faster on a tie);
//   7. the most free provisionable bytes, then the least provisioned fraction, then a hash of
//      (volume id, node id) so identical nodes share many volumes evenly, then the node id.

/// <summary>Lifecycle state of a node as the cluster records it. Only <see cref="Online"/> nodes get new replicas.</summary>
public enum NodeStatus
{
    Online,
    Offline,
    Maintenance,
    Decommissioning,
}

/// <summary>A storage pool of a node as the cluster last recorded it. Bytes throughout.</summary>
/// <param name="Id">Pool id, unique within its node.</param>
/// <param name="TotalBytes">Usable capacity of the pool's drives.</param>
/// <param name="UsedBytes">Bytes actually allocated on the drives (thin volumes use less than they provision).</param>
/// <param name="ProvisionedBytes">Sum of the sizes of the replicas in the pool.</param>
/// <param name="OvercommitRatio">Provisioned bytes may reach <c>TotalBytes x OvercommitRatio</c> (1 = no thin overcommit).</param>
/// <param name="FullFraction">The pool takes no new replica once <c>UsedBytes / TotalBytes</c> reaches this (0..1).</param>
public sealed record PoolInfo(
    string Id,
    IoPriority IoPriority,
    long TotalBytes,
    long UsedBytes,
    long ProvisionedBytes,
    double OvercommitRatio = 1.0,
    double FullFraction = 0.9)
{
    /// <summary>
    /// The provisioning limit, <c>TotalBytes x OvercommitRatio</c> rounded down; 0 for an empty pool or
    /// a ratio that is not positive, saturated at <see cref="long.MaxValue"/>.
    /// </summary>
    public long ProvisionableLimitBytes
    {
        get
        {
            if (TotalBytes <= 0 || !(OvercommitRatio > 0))
            {
                return 0;
            }

            var limit = Math.Floor(TotalBytes * OvercommitRatio);
            return limit >= long.MaxValue ? long.MaxValue : (long)limit;
        }
    }

    /// <summary>Bytes that can still be provisioned here (may be negative when over-provisioned).</summary>
    public long FreeProvisionableBytes => ProvisionableLimitBytes - ProvisionedBytes;

    /// <summary>True when <see cref="UsedBytes"/> has reached <see cref="FullFraction"/> of the total (or the pool has no capacity).</summary>
    public bool IsFull => TotalBytes <= 0 || !((double)UsedBytes / TotalBytes < FullFraction);

    /// <summary>True when a new replica of <paramref name="sizeBytes"/> fits: not full, and within the provisioning limit.</summary>
    public bool HasRoomFor(long sizeBytes) => !IsFull && FreeProvisionableBytes >= sizeBytes;
}

/// <summary>A node of the cluster as the cluster state records it.</summary>
/// <param name="Id">Stable node id, unique in the cluster.</param>
/// <param name="Name">Host name, for people and for <c>--nodes</c>.</param>
/// <param name="Addresses">Addresses the node is reachable at ("10.0.0.5", "10.0.0.5:9501"); <c>--nodes</c> matches them.</param>
/// <param name="Zone">Failure zone; empty when unknown. All nodes with an empty zone count as one zone.</param>
/// <param name="Rack">Rack within the zone; empty when unknown. Racks are told apart by (zone, rack).</param>
/// <param name="Labels">Node labels (key → value) that volumes may require.</param>
public sealed record NodeInfo(
    string Id,
    string Name,
    IReadOnlyList<string> Addresses,
    string Zone,
    string Rack,
    IReadOnlyDictionary<string, string> Labels,
    NodeStatus Status,
    IReadOnlyList<PoolInfo> Pools);

/// <summary>
/// The nodes of the cluster at one instant. Immutable by contract: a <see cref="PlacementEngine"/>
/// indexes it once and keeps reading it (labels, names), so neither the list nor the nodes'
/// collections may change while an engine built from it is in use. Derive a new topology instead
/// (<c>with</c>, <see cref="WithProvisioned"/>).
/// </summary>
public sealed record ClusterTopology(IReadOnlyList<NodeInfo> Nodes)
{
    /// <summary>
    /// A copy with <paramref name="deltaBytes"/> added to the provisioned bytes of one pool, as committing
    /// a placement would do. Unknown node or pool: the same topology. O(nodes).
    /// </summary>
    public ClusterTopology WithProvisioned(string nodeId, string poolId, long deltaBytes)
    {
        for (var i = 0; i < Nodes.Count; i++)
        {
            var node = Nodes[i];
            if (!string.Equals(node.Id, nodeId, StringComparison.Ordinal))
            {
                continue;
            }

            for (var p = 0; p < node.Pools.Count; p++)
            {
                var pool = node.Pools[p];
                if (!string.Equals(pool.Id, poolId, StringComparison.Ordinal))
                {
                    continue;
                }

                var pools = node.Pools.ToArray();
                pools[p] = pool with { ProvisionedBytes = pool.ProvisionedBytes + deltaBytes };
                var nodes = Nodes.ToArray();
                nodes[i] = node with { Pools = pools };
                return new ClusterTopology(nodes);
            }
        }

        return this;
    }
}

/// <summary>One replica's location: a pool on a node.</summary>
public readonly record struct ReplicaLocation(string NodeId, string PoolId)
{
    public override string ToString() => $"{NodeId}/{PoolId}";
}

/// <summary>What to place.</summary>
/// <param name="VolumeId">The volume; also seeds the tie-break hash that spreads identical candidates.</param>
/// <param name="ReplicaCount">The volume's replication factor (<c>repl</c>), 1..3: the total including <see cref="PlacedReplicas"/>.</param>
/// <param name="SizeBytes">Size of each replica (the volume size), &gt; 0.</param>
public sealed record PlacementRequest(string VolumeId, int ReplicaCount, long SizeBytes)
{
    /// <summary>The largest replication factor Slab supports.</summary>
    public const int MaxReplicaCount = 3;

    /// <summary>Requested io priority; null = any pool is as good as another.</summary>
    public IoPriority? IoPriority { get; init; }

    /// <summary>
    /// <c>--nodes</c>: entries each matching a node id, name or address (case-insensitive; an address
    /// "host:port" also matches "host"). Empty = any node. An entry that matches no node is refused.
    /// </summary>
    public IReadOnlyList<string> NodeSelector { get; init; } = [];

    /// <summary>Labels a node must carry, each with exactly this value (ordinal). Empty = none required.</summary>
    public IReadOnlyDictionary<string, string> RequiredLabels { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// <c>--zones</c>: the failure zones replicas may go to (ordinal). Empty = any zone. Replicas still
    /// spread across the allowed zones.
    /// </summary>
    public IReadOnlyList<string> Zones { get; init; } = [];

    /// <summary><c>--racks</c>: the racks replicas may go to (ordinal, in any zone). Empty = any rack.</summary>
    public IReadOnlyList<string> Racks { get; init; } = [];

    /// <summary>
    /// A node (id, name or address, as <see cref="NodeSelector"/> matches) that gets the first new
    /// replica when it qualifies: the node the volume's user runs on, so that its reads stay local.
    /// The other replicas still spread away from it. Null or unmatched = no preference (never a refusal).
    /// </summary>
    public string? PreferredNode { get; init; }

    /// <summary>Node ids never to choose (for example the node a failed replica was on). Unknown ids are ignored.</summary>
    public IReadOnlyList<string> AvoidNodes { get; init; } = [];

    /// <summary>
    /// Replicas the volume already has. Their nodes are not chosen again, and their zones and racks
    /// count toward the spread. <c>ReplicaCount - PlacedReplicas.Count</c> new replicas are placed.
    /// </summary>
    public IReadOnlyList<ReplicaLocation> PlacedReplicas { get; init; } = [];

    /// <summary>How many new replicas the request asks for.</summary>
    public int NewReplicaCount => ReplicaCount - PlacedReplicas.Count;
}

/// <summary>Why a placement was refused.</summary>
public enum PlacementError
{
    /// <summary>The request itself is malformed (replica count, size, volume id, placed replicas).</summary>
    InvalidRequest,

    /// <summary><c>--nodes</c> names a node that does not exist, or matches fewer nodes than replicas needed.</summary>
    NodeSelectorUnmatched,

    /// <summary>Fewer nodes carry the required labels, or lie in the allowed zones and racks, than replicas needed.</summary>
    LabelsUnmatched,

    /// <summary>Enough nodes match, but too few of them are online.</summary>
    NotEnoughNodes,

    /// <summary>Enough nodes are online, but too few have a pool with room for the replica.</summary>
    NoCapacity,
}

/// <summary>A refusal: what kind, and a message a person can act on (which nodes qualified, why the others did not).</summary>
public sealed record PlacementFailure(PlacementError Error, string Message)
{
    public override string ToString() => $"{Error}: {Message}";
}

/// <summary>
/// The outcome of <see cref="PlacementEngine.Place(PlacementRequest)"/>: either one location per new
/// replica, on distinct nodes, in the order they were chosen (best first), or a failure.
/// </summary>
public sealed class PlacementResult
{
    private PlacementResult(IReadOnlyList<ReplicaLocation> replicas, PlacementFailure? failure)
    {
        Replicas = replicas;
        Failure = failure;
    }

    /// <summary>The new replicas' locations; empty on failure.</summary>
    public IReadOnlyList<ReplicaLocation> Replicas { get; }

    /// <summary>Why the placement was refused; null on success.</summary>
    public PlacementFailure? Failure { get; }

    [MemberNotNullWhen(false, nameof(Failure))]
    public bool Succeeded => Failure is null;

    public static PlacementResult Success(IReadOnlyList<ReplicaLocation> replicas) => new(replicas, null);

    public static PlacementResult Fail(PlacementError error, string message) => new([], new PlacementFailure(error, message));

    public override string ToString() => Failure?.ToString() ?? string.Join(", ", Replicas);
}
