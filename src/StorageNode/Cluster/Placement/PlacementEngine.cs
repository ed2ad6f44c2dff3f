using System.Buffers;
using Slab.Store;

namespace Slab.Cluster.Placement;

/// <summary>
/// Places the replicas of volumes on one immutable <see cref="ClusterTopology"/>, by the rules in
/// <c>Placement.Seam.cs</c>. Building an engine copies and indexes the topology (O(nodes + pools));
/// <see cref="Place(PlacementRequest)"/> is then O(candidate nodes x new replicas), allocation-light
/// and thread-safe (the engine is never mutated after construction, apart from a lazily built
/// <c>--nodes</c> index). Deterministic: the same topology and request give the same result, whatever
/// the order of the nodes in the topology.
/// </summary>
/// <remarks>
/// Spread is chosen greedily — each new replica goes to a new zone if any candidate offers one, else
/// to a new rack, else anywhere — which maximizes the number of distinct zones and then of distinct
/// racks: every node carries one replica at most, so each step adds one zone (one rack) until no
/// candidate can, and no set of nodes does better. Io priority and free space then pick among the
/// candidates of the best spread tier at each step.
/// </remarks>
public sealed partial class PlacementEngine
{
    private const int NoPool = -1;

    private readonly ClusterTopology _topology;
    private readonly int[] _zone;
    private readonly int[] _rack;
    private readonly int[] _idRank;
    private readonly bool[] _isOnline;
    private readonly ulong[] _idHash;
    private readonly int[] _poolStart;
    private readonly PoolSlot[] _pools;
    private readonly int[] _online;
    private readonly Dictionary<string, int> _byId;
    private Dictionary<string, int[]>? _selectorIndex;

    /// <summary>Indexes <paramref name="topology"/>; its collections must not change while this engine is used.</summary>
    /// <exception cref="ArgumentException">Two nodes share an id.</exception>
    public PlacementEngine(ClusterTopology topology)
    {
        ArgumentNullException.ThrowIfNull(topology);
        _topology = topology;
        var nodes = topology.Nodes;
        var count = nodes.Count;
        _zone = new int[count];
        _rack = new int[count];
        _idRank = new int[count];
        _isOnline = new bool[count];
        _idHash = new ulong[count];
        _poolStart = new int[count + 1];
        _byId = new Dictionary<string, int>(count, StringComparer.Ordinal);

        var zones = new Dictionary<string, int>(StringComparer.Ordinal);
        var racks = new Dictionary<(int Zone, string Rack), int>();
        var poolCount = 0;
        var onlineCount = 0;
        for (var i = 0; i < count; i++)
        {
            var node = nodes[i];
            if (!_byId.TryAdd(node.Id, i))
            {
                throw new ArgumentException($"Two nodes of the topology have the id '{node.Id}'.", nameof(topology));
            }

            var zone = Intern(zones, node.Zone ?? string.Empty);
            _zone[i] = zone;
            _rack[i] = Intern(racks, (zone, node.Rack ?? string.Empty));
            _idHash[i] = Fnv1a(node.Id);
            poolCount += node.Pools.Count;
            if (node.Status == NodeStatus.Online)
            {
                _isOnline[i] = true;
                onlineCount++;
            }
        }

        // Ranks in ordinal id order: the last tie-break, and the scan order, so results don't
        // depend on the order of the topology's list.
        var order = new int[count];
        for (var i = 0; i < count; i++)
        {
            order[i] = i;
        }

        Array.Sort(order, (a, b) => string.CompareOrdinal(nodes[a].Id, nodes[b].Id));
        _online = new int[onlineCount];
        var o = 0;
        for (var r = 0; r < count; r++)
        {
            _idRank[order[r]] = r;
            if (_isOnline[order[r]])
            {
                _online[o++] = order[r];
            }
        }

        _pools = new PoolSlot[poolCount];
        var p = 0;
        for (var i = 0; i < count; i++)
        {
            _poolStart[i] = p;
            foreach (var pool in nodes[i].Pools)
            {
                _pools[p++] = new PoolSlot(pool);
            }
        }

        _poolStart[count] = p;
    }

    /// <summary>The topology this engine places on.</summary>
    public ClusterTopology Topology => _topology;

    /// <summary>One-shot placement: indexes <paramref name="topology"/> and places <paramref name="request"/>.</summary>
    public static PlacementResult Place(ClusterTopology topology, PlacementRequest request) =>
        new PlacementEngine(topology).Place(request);

    /// <summary>
    /// Chooses a (node, pool) for each of the request's <see cref="PlacementRequest.NewReplicaCount"/>
    /// new replicas, or says why it cannot. Never throws for a bad request: that is a
    /// <see cref="PlacementError.InvalidRequest"/>. Refuses only when no valid placement exists.
    /// </summary>
    public PlacementResult Place(PlacementRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (Validate(request) is { } invalid)
        {
            return PlacementResult.Fail(PlacementError.InvalidRequest, invalid);
        }

        int[]? selected = null;
        if (request.NodeSelector.Count > 0)
        {
            selected = ResolveSelector(request.NodeSelector, out var unknown);
            if (unknown is not null)
            {
                return PlacementResult.Fail(PlacementError.NodeSelectorUnmatched, UnknownSelectorMessage(unknown));
            }
        }

        // Nodes already holding a replica or to avoid: few, so a small list beats a set.
        var excludedCount = request.PlacedReplicas.Count + request.AvoidNodes.Count;
        Span<int> excluded = excludedCount <= 16 ? stackalloc int[excludedCount] : new int[excludedCount];
        var e = 0;
        foreach (var replica in request.PlacedReplicas)
        {
            excluded[e++] = _byId.GetValueOrDefault(replica.NodeId, -1);
        }

        foreach (var id in request.AvoidNodes)
        {
            excluded[e++] = _byId.GetValueOrDefault(id, -1);
        }

        var scan = selected ?? _online;
        var candidates = ArrayPool<Candidate>.Shared.Rent(Math.Max(scan.Length, 1));
        try
        {
            var volumeHash = Fnv1a(request.VolumeId);
            var priority = request.IoPriority;
            var candidateCount = 0;
            foreach (var node in scan)
            {
                if (!_isOnline[node] || excluded.Contains(node) || !HasLabels(node, request.RequiredLabels) || !InTopology(node, request))
                {
                    continue;
                }

                var pool = BestPool(node, request.SizeBytes, priority);
                if (pool == NoPool)
                {
                    continue;
                }

                ref readonly var slot = ref _pools[pool];
                candidates[candidateCount++] = new Candidate(
                    node,
                    pool,
                    _zone[node],
                    _rack[node],
                    PriorityKey(slot.Priority, priority),
                    slot.Free,
                    slot.ProvisionedFraction,
                    Mix(volumeHash ^ _idHash[node]),
                    _idRank[node]);
            }

            var needed = request.NewReplicaCount;
            if (candidateCount < needed)
            {
                return Diagnose(request, selected, excluded);
            }

            var preferred = -1;
            if (request.PreferredNode is { Length: > 0 } wanted && ResolveSelector([wanted], out _) is [var preferredNode])
            {
                for (var c = 0; c < candidateCount && preferred < 0; c++)
                {
                    preferred = candidates[c].Node == preferredNode ? c : -1;
                }
            }

            return PlacementResult.Success(Choose(candidates.AsSpan(0, candidateCount), needed, request.PlacedReplicas, preferred));
        }
        finally
        {
            ArrayPool<Candidate>.Shared.Return(candidates);
        }
    }

    /// <summary>Picks <paramref name="needed"/> candidates, zone then rack spread first; <paramref name="preferred"/> (an index, or -1) is picked first.</summary>
    private ReplicaLocation[] Choose(Span<Candidate> candidates, int needed, IReadOnlyList<ReplicaLocation> placed, int preferred)
    {
        // Zones and racks covered so far: the placed replicas' (when their node is known) and the chosen.
        var capacity = placed.Count + needed;
        Span<int> zones = stackalloc int[capacity];
        Span<int> racks = stackalloc int[capacity];
        var covered = 0;
        foreach (var replica in placed)
        {
            if (_byId.TryGetValue(replica.NodeId, out var node))
            {
                zones[covered] = _zone[node];
                racks[covered] = _rack[node];
                covered++;
            }
        }

        var result = new ReplicaLocation[needed];
        var remaining = candidates.Length;
        for (var step = 0; step < needed; step++)
        {
            var coveredZones = zones[..covered];
            var coveredRacks = racks[..covered];
            var best = 0;
            var bestTier = Tier(candidates[0], coveredZones, coveredRacks);
            for (var c = 1; c < remaining; c++)
            {
                var tier = Tier(candidates[c], coveredZones, coveredRacks);
                if (tier < bestTier || (tier == bestTier && candidates[c].IsBetterThan(candidates[best])))
                {
                    best = c;
                    bestTier = tier;
                }
            }

            if (step == 0 && preferred >= 0)
            {
                best = preferred;
            }

            var chosen = candidates[best];
            result[step] = new ReplicaLocation(_topology.Nodes[chosen.Node].Id, _pools[chosen.Pool].Id);
            zones[covered] = chosen.Zone;
            racks[covered] = chosen.Rack;
            covered++;
            candidates[best] = candidates[--remaining];
        }

        return result;
    }

    /// <summary>0: adds a zone; 1: adds a rack in a covered zone; 2: adds neither.</summary>
    private static int Tier(in Candidate candidate, ReadOnlySpan<int> zones, ReadOnlySpan<int> racks) =>
        !zones.Contains(candidate.Zone) ? 0 : !racks.Contains(candidate.Rack) ? 1 : 2;

    /// <summary>The node's best pool with room for the replica, or <see cref="NoPool"/>.</summary>
    private int BestPool(int node, long sizeBytes, IoPriority? priority)
    {
        var best = NoPool;
        var bestKey = int.MaxValue;
        for (var p = _poolStart[node]; p < _poolStart[node + 1]; p++)
        {
            ref readonly var pool = ref _pools[p];
            if (pool.Full || pool.Free < sizeBytes)
            {
                continue;
            }

            var key = PriorityKey(pool.Priority, priority);
            if (best == NoPool
                || key < bestKey
                || (key == bestKey && (pool.Free > _pools[best].Free
                    || (pool.Free == _pools[best].Free && string.CompareOrdinal(pool.Id, _pools[best].Id) < 0))))
            {
                best = p;
                bestKey = key;
            }
        }

        return best;
    }

    /// <summary>Whether the node lies in one of the request's zones and racks (each empty = any).</summary>
    private bool InTopology(int node, PlacementRequest request)
    {
        var info = _topology.Nodes[node];
        return (request.Zones.Count == 0 || Contains(request.Zones, info.Zone))
            && (request.Racks.Count == 0 || Contains(request.Racks, info.Rack));

        static bool Contains(IReadOnlyList<string> allowed, string value)
        {
            foreach (var entry in allowed)
            {
                if (string.Equals(entry, value, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private bool HasLabels(int node, IReadOnlyDictionary<string, string> required)
    {
        if (required.Count == 0)
        {
            return true;
        }

        var labels = _topology.Nodes[node].Labels;
        foreach (var (key, value) in required)
        {
            if (!labels.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// 0 for the requested priority (or when none is requested), then by distance; at equal distance
    /// the faster pool first (High &lt; Medium &lt; Low in the enum).
    /// </summary>
    private static int PriorityKey(IoPriority pool, IoPriority? requested)
    {
        if (requested is not { } wanted)
        {
            return 0;
        }

        var distance = Math.Abs((int)pool - (int)wanted);
        return (distance * 2) + (pool > wanted ? 1 : 0);
    }

    /// <summary>Distinct node indices matching the entries, in id order; <paramref name="unknown"/> lists entries matching none.</summary>
    private int[] ResolveSelector(IReadOnlyList<string> entries, out List<string>? unknown)
    {
        var index = LazyInitializer.EnsureInitialized(ref _selectorIndex, BuildSelectorIndex);
        unknown = null;
        var matched = new HashSet<int>();
        foreach (var entry in entries)
        {
            if (index.TryGetValue(entry.Trim(), out var nodes))
            {
                matched.UnionWith(nodes);
            }
            else
            {
                (unknown ??= []).Add(entry);
            }
        }

        var result = matched.ToArray();
        Array.Sort(result, (a, b) => _idRank[a].CompareTo(_idRank[b]));
        return result;
    }

    private Dictionary<string, int[]> BuildSelectorIndex()
    {
        var lists = new Dictionary<string, List<int>>(StringComparer.OrdinalIgnoreCase);
        void Add(string? key, int node)
        {
            if (string.IsNullOrWhiteSpace(key))
            {
                return;
            }

            if (!lists.TryGetValue(key, out var list))
            {
                lists[key] = list = [];
            }

            if (!list.Contains(node))
            {
                list.Add(node);
            }
        }

        for (var i = 0; i < _topology.Nodes.Count; i++)
        {
            var node = _topology.Nodes[i];
            Add(node.Id, i);
            Add(node.Name, i);
            foreach (var address in node.Addresses)
            {
                Add(address, i);
                Add(HostOf(address), i);
            }
        }

        var index = new Dictionary<string, int[]>(lists.Count, StringComparer.OrdinalIgnoreCase);
        foreach (var (key, list) in lists)
        {
            index[key] = [.. list];
        }

        return index;
    }

    /// <summary>"host:port" → "host", "[v6]:port" → "v6"; null when the address has no port.</summary>
    private static string? HostOf(string address)
    {
        if (address.StartsWith('['))
        {
            var close = address.IndexOf(']', StringComparison.Ordinal);
            return close > 1 ? address[1..close] : null;
        }

        var colon = address.IndexOf(':', StringComparison.Ordinal);
        return colon > 0 && colon == address.LastIndexOf(':') ? address[..colon] : null;
    }

    private static int Intern<TKey>(Dictionary<TKey, int> ids, TKey key)
        where TKey : notnull
    {
        if (!ids.TryGetValue(key, out var id))
        {
            id = ids.Count;
            ids[key] = id;
        }

        return id;
    }

    /// <summary>FNV-1a over the UTF-16 code units: stable across processes, unlike string.GetHashCode.</summary>
    private static ulong Fnv1a(string value)
    {
        var hash = 14695981039346656037UL;
        foreach (var c in value)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return hash;
    }

    /// <summary>SplitMix64 finalizer: spreads (volume, node) pairs evenly.</summary>
    private static ulong Mix(ulong x)
    {
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>A pool's figures, copied at construction.</summary>
    private readonly struct PoolSlot
    {
        public PoolSlot(PoolInfo pool)
        {
            Id = pool.Id;
            Priority = pool.IoPriority;
            Full = pool.IsFull;
            var limit = pool.ProvisionableLimitBytes;
            Free = limit - pool.ProvisionedBytes;
            ProvisionedFraction = limit > 0 ? (double)pool.ProvisionedBytes / limit : double.PositiveInfinity;
        }

        public string Id { get; }

        public IoPriority Priority { get; }

        public bool Full { get; }

        public long Free { get; }

        public double ProvisionedFraction { get; }
    }

    /// <summary>A node that can take a replica, with its best pool and the keys that rank it.</summary>
    private readonly record struct Candidate(
        int Node,
        int Pool,
        int Zone,
        int Rack,
        int PriorityKey,
        long Free,
        double ProvisionedFraction,
        ulong Hash,
        int IdRank)
    {
        /// <summary>Within one spread tier: nearer priority, more free bytes, less provisioned, hash, id.</summary>
        public bool IsBetterThan(in Candidate other)
        {
            if (PriorityKey != other.PriorityKey)
            {
                return PriorityKey < other.PriorityKey;
            }

            if (Free != other.Free)
            {
                return Free > other.Free;
            }

            if (ProvisionedFraction != other.ProvisionedFraction)
            {
                return ProvisionedFraction < other.ProvisionedFraction;
            }

            return Hash != other.Hash ? Hash < other.Hash : IdRank < other.IdRank;
        }
    }
}
