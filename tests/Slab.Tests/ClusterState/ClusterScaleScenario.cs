using System.Collections.Immutable;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Slab.Cluster.Placement;
using Slab.Cluster.State;
using Slab.Store;
using CState = Slab.Cluster.State.ClusterState;

namespace Slab.Tests.ClusterState;

/// <summary>
/// A cluster at the scale Slab aims at, built the way the leader will build it: 1,000 nodes join
/// (RegisterNode), a few are put in maintenance or decommissioned (SetNodeStatus), then 16,000 volumes
/// are each placed by <see cref="PlacementEngine"/> over <see cref="PlacementTopology.FromState"/> of the
/// current state and committed as CreateVolume with the placed replicas, all through
/// <see cref="ClusterStateTransitions.Apply"/>. Deterministic: the same cluster every time.
/// Shared, as linked source, by <c>ClusterScaleTests</c> and <c>bench/Slab.Bench</c> (no test framework here).
/// </summary>
/// <remarks>
/// Nodes: node i is in zone i % 5 and rack (i / 5) % 10 of that zone (20 nodes a rack), ids and pool
/// ids are 32 hex digits like <c>node.json</c>'s. One pool each: 8 TiB on three nodes in four, 12 TiB on
/// the fourth (two hardware generations), less 0-1 % of file system overhead, 0-20 % used; label
/// <c>disk=nvme</c> on every 7th node (all zones). Left out of placement: every 100th node from 13 in
/// maintenance, every 200th from 77 decommissioning, every 100th from 42 dead (gossip), every 200th
/// from 99 reported 96 % used by gossip. Volumes: repl 1, 2 or 3 (2 : 4 : 4), 16 GiB to 1 TiB in powers
/// of two, one namespace label; every 50th requires <c>disk=nvme</c>, every 200th names six nodes with
/// <c>--nodes</c>.
/// </remarks>
internal sealed class ClusterScaleScenario
{
    public const int NodeCount = 1000;
    public const int VolumeCount = 16_000;
    public const int Zones = 5;
    public const int RacksPerZone = 10;
    public const long GiB = 1L << 30;
    public const long TiB = 1L << 40;
    public const long MaxVolumeBytes = 1 * TiB;
    public const double OvercommitRatio = 4.0;
    public const double FullFraction = 0.95;

    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static readonly ImmutableSortedDictionary<string, string> Nvme =
        ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("disk", "nvme")]);

    private static readonly ImmutableSortedDictionary<string, string> NoLabels = Nvme.Clear();

    private readonly string[] _nodeIds = new string[NodeCount];
    private readonly Dictionary<string, int> _indexById = new(StringComparer.Ordinal);

    public ClusterScaleScenario()
    {
        for (var i = 0; i < NodeCount; i++)
        {
            _nodeIds[i] = HexId(1, i);
            _indexById[_nodeIds[i]] = i;
        }
    }

    /// <summary>The outcome of <see cref="Build"/>: the state, every command applied, and the first failure (null when none).</summary>
    public sealed record Run(CState State, IReadOnlyList<ClusterCommand> Log, string? Failure);

    public string NodeId(int index) => _nodeIds[index];

    /// <summary>The node's index; -1 for an id that is not one of the scenario's.</summary>
    public int IndexOf(string nodeId) => _indexById.GetValueOrDefault(nodeId, -1);

    public static string NodeName(int index) => $"host-{index:D4}";

    public static bool InMaintenance(int index) => index % 100 == 13;

    public static bool Decommissioning(int index) => index % 200 == 77;

    public static bool IsDead(int index) => index % 100 == 42;

    public static bool ReportedFull(int index) => index % 200 == 99;

    public static bool HasNvme(int index) => index % 7 == 3;

    /// <summary>True when general volumes may go to the node: none of the four exclusions applies.</summary>
    public static bool TakesReplicas(int index) => !InMaintenance(index) && !Decommissioning(index) && !IsDead(index) && !ReportedFull(index);

    /// <summary>Gossip's liveness, for <see cref="PlacementTopology.FromState"/>.</summary>
    public bool IsAlive(string nodeId) => IndexOf(nodeId) is var i && i >= 0 && !IsDead(i);

    /// <summary>Gossip's usage: the nodes <see cref="ReportedFull"/> say 96 % used; the others report nothing new.</summary>
    public LivePoolUsage? LiveUsage(string nodeId)
    {
        var i = IndexOf(nodeId);
        if (i < 0 || !ReportedFull(i))
        {
            return null;
        }

        var total = PoolBytes(i);
        return new LivePoolUsage(total, total / 100 * 96);
    }

    /// <summary>The node's recorded pool capacity (bytes, a multiple of 4 KiB).</summary>
    public static long PoolBytes(int index)
    {
        var nominal = (index % 4 == 3 ? 12 : 8) * TiB;
        return nominal - (nominal / 100 * (long)(Mix(2, index) % 101) / 100 / 4096 * 4096);
    }

    public RegisterNode RegisterNode(int index)
    {
        var zone = index % Zones;
        var rack = index / Zones % RacksPerZone;
        var total = PoolBytes(index);
        return new RegisterNode
        {
            NodeId = _nodeIds[index],
            Name = NodeName(index),
            Addresses = [$"10.{zone}.{rack}.{(index / (Zones * RacksPerZone)) + 10}:9501"],
            Zone = $"zone-{zone}",
            Rack = $"rack-{rack}",
            Labels = HasNvme(index) ? Nvme : NoLabels,
            Pools = [new PoolSummary { Id = HexId(3, index), IoPriority = IoPriority.Medium, TotalBytes = total, UsedBytes = total / 5 * (long)(Mix(4, index) % 101) / 100 }],
            IsKvdbVoter = index < 3,
            Timestamp = T0,
        };
    }

    /// <summary>The operator's status changes: maintenance and decommissioning.</summary>
    public IEnumerable<SetNodeStatus> StatusChanges()
    {
        for (var i = 0; i < NodeCount; i++)
        {
            if (InMaintenance(i) || Decommissioning(i))
            {
                yield return new SetNodeStatus { NodeId = _nodeIds[i], Status = InMaintenance(i) ? Slab.Cluster.State.NodeStatus.Maintenance : Slab.Cluster.State.NodeStatus.Decommissioning, Timestamp = T0 };
            }
        }
    }

    public static string VolumeId(int v) => HexId(5, v);

    public static string VolumeName(int v) => $"pvc-{v:D6}";

    public static int Repl(int v) => (v % 10) switch { < 2 => 1, < 6 => 2, _ => 3 };

    public static long VolumeBytes(int v) => (16 * GiB) << (int)(Mix(6, v) % 7);

    public static bool RequiresNvme(int v) => v % 50 == 7;

    public static bool NamesNodes(int v) => v % 200 == 11;

    /// <summary>The <c>--nodes</c> of volume <paramref name="v"/>: six node names, one or two in every zone; empty for most volumes.</summary>
    public static IReadOnlyList<string> NodeSelector(int v)
    {
        if (!NamesNodes(v))
        {
            return [];
        }

        var names = new string[6];
        for (var k = 0; k < names.Length; k++)
        {
            names[k] = NodeName(((v * 7) + (k * 163)) % NodeCount);
        }

        return names;
    }

    public static VolumeSpec Spec(int v) => new()
    {
        SizeBytes = VolumeBytes(v),
        Repl = Repl(v),
        Labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("namespace", $"ns-{v % 40}")]),
        NodeSelector = RequiresNvme(v) ? Nvme : NoLabels,
    };

    /// <summary>What the leader asks the engine for volume <paramref name="v"/>: the spec's repl, size, io priority and labels, plus <c>--nodes</c>.</summary>
    public static PlacementRequest Request(int v)
    {
        var spec = Spec(v);
        return new PlacementRequest(VolumeId(v), spec.Repl, spec.SizeBytes)
        {
            IoPriority = spec.IoPriority,
            RequiredLabels = spec.NodeSelector,
            NodeSelector = NodeSelector(v),
        };
    }

    /// <summary>The create the leader proposes once placement chose <paramref name="replicas"/>: a new, empty volume, so every replica is in sync.</summary>
    public static CreateVolume Create(int v, IReadOnlyList<ReplicaLocation> replicas) => new()
    {
        RequestId = $"req-{v}",
        VolumeId = VolumeId(v),
        Name = VolumeName(v),
        Spec = Spec(v),
        Replicas = [.. replicas.Select(r => new ReplicaInfo { NodeId = r.NodeId, PoolId = r.PoolId, State = ReplicaState.InSync })],
        Timestamp = T0,
    };

    /// <summary>
    /// Builds the cluster: nodes, status changes, then <paramref name="volumes"/> placed and created one
    /// at a time. Stops at the first failure. Placement reads <see cref="PlacementTopology.FromState"/>
    /// before every <paramref name="fromStateEvery"/>-th volume (1: every volume, as the leader does);
    /// in between it reads the last topology with the committed replicas added
    /// (<see cref="ClusterTopology.WithProvisioned"/>), and each fresh FromState must match that
    /// topology pool for pool, or the build fails. FromState walks every replica (≈ 2 ms at 16,000
    /// volumes), so calling it for each of 16,000 volumes costs ≈ 15-30 s.
    /// </summary>
    public Run Build(int volumes = VolumeCount, int fromStateEvery = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(fromStateEvery, 1);
        var log = new List<ClusterCommand>(NodeCount + volumes + 20);
        var state = CState.Empty;
        string? Apply(ClusterCommand command)
        {
            var (next, result) = ClusterStateTransitions.Apply(state, command);
            if (!result.IsSuccess)
            {
                return $"{command.GetType().Name} #{log.Count}: {result}";
            }

            state = next;
            log.Add(command);
            return null;
        }

        for (var i = 0; i < NodeCount; i++)
        {
            if (Apply(RegisterNode(i)) is { } failure)
            {
                return new Run(state, log, failure);
            }
        }

        foreach (var change in StatusChanges())
        {
            if (Apply(change) is { } failure)
            {
                return new Run(state, log, failure);
            }
        }

        ClusterTopology? topology = null;
        for (var v = 0; v < volumes; v++)
        {
            if (v % fromStateEvery == 0)
            {
                var fresh = PlacementTopology.FromState(state, IsAlive, LiveUsage, OvercommitRatio, FullFraction);
                if (topology is not null && Difference(topology, fresh) is { } difference)
                {
                    return new Run(state, log, $"before volume {v}, FromState differs from the committed placements: {difference}");
                }

                topology = fresh;
            }

            var placed = new PlacementEngine(topology!).Place(Request(v));
            if (!placed.Succeeded)
            {
                return new Run(state, log, $"placing volume {v}: {placed}");
            }

            if (Apply(Create(v, placed.Replicas)) is { } failure)
            {
                return new Run(state, log, failure);
            }

            foreach (var replica in placed.Replicas)
            {
                topology = topology!.WithProvisioned(replica.NodeId, replica.PoolId, VolumeBytes(v));
            }
        }

        return new Run(state, log, null);
    }

    /// <summary>
    /// Proposes <paramref name="commands"/> as a leader would without the network: each encoded as a
    /// <see cref="Proposal"/> and appended to <paramref name="wal"/> (term 1), then one commit for all
    /// (one flush); completes when the WAL's state machine has applied them.
    /// </summary>
    public static async Task AppendCommitAndApplyAsync(WriteAheadLog wal, IEnumerable<ClusterCommand> commands)
    {
        foreach (var command in commands)
        {
            var proposal = new Proposal { Id = Guid.NewGuid(), Command = command };
            await wal.AppendAsync(new BinaryLogEntry { Term = 1, Content = ClusterStateCodec.EncodeProposal(proposal) }).ConfigureAwait(false);
        }

        await wal.CommitAsync(wal.LastEntryIndex).ConfigureAwait(false);
        await wal.WaitForApplyAsync(wal.LastEntryIndex).ConfigureAwait(false);
    }

    /// <summary>The first node or pool whose status or figures differ; null when none. Both in node id order.</summary>
    private static string? Difference(ClusterTopology expected, ClusterTopology actual)
    {
        if (expected.Nodes.Count != actual.Nodes.Count)
        {
            return $"{expected.Nodes.Count} nodes, then {actual.Nodes.Count}";
        }

        for (var i = 0; i < expected.Nodes.Count; i++)
        {
            var (e, a) = (expected.Nodes[i], actual.Nodes[i]);
            if (e.Id != a.Id || e.Status != a.Status || e.Pools.Count != a.Pools.Count)
            {
                return $"node {e.Id} ({e.Status}, {e.Pools.Count} pools), then {a.Id} ({a.Status}, {a.Pools.Count} pools)";
            }

            for (var p = 0; p < e.Pools.Count; p++)
            {
                if (e.Pools[p] != a.Pools[p])
                {
                    return $"node {e.Id}: pool {e.Pools[p]}, then {a.Pools[p]}";
                }
            }
        }

        return null;
    }

    /// <summary>32 hex digits, distinct per (kind, index), stable across runs.</summary>
    private static string HexId(int kind, int index) => $"{Mix(kind, index):x16}{Mix(kind + 100, index):x16}";

    /// <summary>SplitMix64 of (kind, index): a stable pseudo-random number.</summary>
    private static ulong Mix(int kind, int index)
    {
        var x = ((ulong)(uint)kind << 32 | (uint)index) + 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}
