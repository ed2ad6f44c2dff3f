using System.Diagnostics;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Cluster.Placement;
using Slab.Cluster.State;
using Xunit;
using Xunit.Abstractions;
using static Slab.Tests.ClusterState.ClusterScaleScenario;
using CState = Slab.Cluster.State.ClusterState;

namespace Slab.Tests.ClusterState;

/// <summary>Builds <see cref="ClusterScaleScenario"/> once for the tests of <see cref="ClusterScaleTests"/>.</summary>
public sealed class ClusterScaleFixture
{
    /// <summary>
    /// FromState before every 10th volume, with the committed replicas added in between and checked
    /// against it: FromState before each of the 16,000 would take the test from ≈ 5 s to ≈ 30 s.
    /// </summary>
    public const int FromStateEvery = 10;

    public ClusterScaleFixture()
    {
        var clock = Stopwatch.StartNew();
        Result = Scenario.Build(fromStateEvery: FromStateEvery);
        BuildTime = clock.Elapsed;
    }

    internal ClusterScaleScenario Scenario { get; } = new();

    internal ClusterScaleScenario.Run Result { get; }

    public TimeSpan BuildTime { get; }
}

/// <summary>
/// 1,000 nodes and 16,000 volumes through the real control-plane path: every volume placed by
/// <see cref="PlacementEngine"/> over <see cref="PlacementTopology.FromState"/> of the state so far,
/// every command applied by <see cref="ClusterStateTransitions.Apply"/>, then the whole command log
/// replayed through DotNext's write-ahead log into <see cref="ClusterStateMachine"/> and restarted from
/// its snapshot. Placement over a fixed topology at this scale is <see cref="Placement.PlacementScaleTests"/>;
/// timing is for <c>bench/</c>, not asserted here.
/// </summary>
public sealed class ClusterScaleTests(ClusterScaleFixture fixture, ITestOutputHelper output) : IClassFixture<ClusterScaleFixture>
{
    [Fact]
    public void Sixteen_thousand_volumes_placed_from_the_state_are_all_accepted_on_distinct_nodes_and_zones()
    {
        var (state, log, failure) = fixture.Result;
        var scenario = fixture.Scenario;
        output.WriteLine($"built {log.Count} commands in {fixture.BuildTime.TotalSeconds:F1} s");
        Assert.Null(failure);
        Assert.Equal(VolumeCount, state.Volumes.Count);
        Assert.Equal(log.Count, state.Revision);

        // Names are unique: the name index holds every volume, and another create of a taken name is refused.
        Assert.Equal(VolumeCount, state.VolumeIdsByName.Count);
        Assert.All(state.Volumes.Values, v => Assert.Equal(v.Id, state.VolumeIdsByName[v.Name]));
        var taken = Create(42, [.. state.Volumes[VolumeId(7)].Replicas.Select(r => new ReplicaLocation(r.NodeId, r.PoolId))]);
        var duplicate = ClusterStateTransitions.Apply(state, taken with { RequestId = "another-request", VolumeId = "fresh-id", Name = VolumeName(7) });
        Assert.Equal(Rejection.AlreadyExists, duplicate.Result.Rejection);
        Assert.Same(state, duplicate.State);
        var retry = ClusterStateTransitions.Apply(state, Create(42, []));
        Assert.Equal((true, VolumeId(42)), (retry.Result.IsSuccess, retry.Result.VolumeId)); // a retry of the same request: same answer, no change
        Assert.Same(state.Volumes, retry.State.Volumes);

        for (var v = 0; v < VolumeCount; v++)
        {
            var volume = state.Volumes[VolumeId(v)];
            var nodes = volume.Replicas.Select(r => scenario.IndexOf(r.NodeId)).ToArray();
            Assert.Equal(Repl(v), nodes.Length);
            Assert.Equal(nodes.Length, nodes.Distinct().Count());
            Assert.Equal(nodes.Length, nodes.Select(n => n % Zones).Distinct().Count()); // 5 zones, repl <= 3: one zone each
            Assert.All(nodes, n => Assert.True(TakesReplicas(n), $"volume {v} has a replica on excluded node {n}"));
            if (RequiresNvme(v))
            {
                Assert.All(nodes, n => Assert.True(HasNvme(n), $"volume {v} needs disk=nvme, node {n} lacks it"));
            }

            if (NamesNodes(v))
            {
                Assert.All(nodes, n => Assert.Contains(NodeName(n), NodeSelector(v)));
            }
        }
    }

    [Fact]
    public void No_pool_passes_its_provisioning_limit_and_free_space_stays_within_three_volumes_across_nodes()
    {
        var (state, _, failure) = fixture.Result;
        var scenario = fixture.Scenario;
        Assert.Null(failure);

        // Provisioned bytes per pool, summed here independently of PlacementTopology.
        var provisioned = new long[NodeCount];
        var replicas = new int[NodeCount];
        foreach (var volume in state.Volumes.Values)
        {
            foreach (var replica in volume.Replicas)
            {
                var node = scenario.IndexOf(replica.NodeId);
                Assert.Equal(state.Nodes[replica.NodeId].Pools[0].Id, replica.PoolId);
                provisioned[node] += volume.Spec.SizeBytes;
                replicas[node]++;
            }
        }

        var topology = PlacementTopology.FromState(state, scenario.IsAlive, scenario.LiveUsage, OvercommitRatio, FullFraction);
        var free = new List<long>();
        for (var i = 0; i < NodeCount; i++)
        {
            var limit = (long)Math.Floor(PoolBytes(i) * OvercommitRatio);
            var pool = topology.Nodes.Single(n => n.Id == scenario.NodeId(i)).Pools[0];
            Assert.Equal(provisioned[i], pool.ProvisionedBytes);
            Assert.True(provisioned[i] <= limit, $"node {i}: {provisioned[i]} provisioned, limit {limit}");
            if (TakesReplicas(i))
            {
                free.Add(limit - provisioned[i]);
            }
            else
            {
                Assert.Equal(0, replicas[i]);
            }
        }

        // The engine's balancing key is free provisionable bytes: each replica goes to the candidate
        // with the most. Greedy most-free-first keeps every node within one volume of the most free
        // one; the zone-first choice of second and third replicas, and the volumes restricted to
        // nvme nodes or to named nodes, can each put one more volume on a node that was not the most
        // free. So the spread of free bytes over the nodes that take replicas is bounded by three of
        // the largest volumes (1 TiB), against ~25 TiB free per node.
        var spread = free.Max() - free.Min();
        foreach (var (name, members) in new[] { ("8 TiB", (Func<int, bool>)(i => i % 4 != 3)), ("12 TiB", i => i % 4 == 3) })
        {
            var counts = Enumerable.Range(0, NodeCount).Where(i => TakesReplicas(i) && members(i)).Select(i => replicas[i]).ToArray();
            var bytes = Enumerable.Range(0, NodeCount).Where(i => TakesReplicas(i) && members(i)).Select(i => provisioned[i]).ToArray();
            output.WriteLine($"{name} nodes ({counts.Length}): replicas min {counts.Min()} max {counts.Max()} mean {counts.Average():F1}; provisioned min {bytes.Min() / (double)TiB:F2} TiB max {bytes.Max() / (double)TiB:F2} TiB");
            Assert.True(counts.Min() > 0, $"a {name} node that takes replicas got none");
        }

        output.WriteLine($"free provisionable: min {free.Min() / (double)TiB:F2} TiB, max {free.Max() / (double)TiB:F2} TiB, spread {spread / (double)GiB:F0} GiB");
        Assert.True(spread <= 3 * MaxVolumeBytes, $"free bytes spread {spread / GiB} GiB over {3 * MaxVolumeBytes / GiB} GiB");
    }

    [Fact]
    public void The_encoded_snapshot_round_trips_to_an_equal_state()
    {
        var (state, _, failure) = fixture.Result;
        Assert.Null(failure);

        var bytes = ClusterStateCodec.EncodeState(state);
        var decoded = ClusterStateCodec.DecodeState(bytes);
        output.WriteLine($"snapshot: {bytes.Length:N0} bytes");

        // Encoding is deterministic, so equal bytes are an equal state (records compare collections by reference).
        Assert.Equal(bytes, ClusterStateCodec.EncodeState(decoded));
        Assert.Equal((state.Revision, state.Nodes.Count, state.Volumes.Count), (decoded.Revision, decoded.Nodes.Count, decoded.Volumes.Count));
        Assert.Equal(state.VolumeIdsByName, decoded.VolumeIdsByName); // the derived index is rebuilt
        Assert.Equal(state.Volumes[VolumeId(12_345)].Spec.Labels, decoded.Volumes[VolumeId(12_345)].Spec.Labels);
    }

    [Fact]
    public async Task The_command_log_through_the_write_ahead_log_and_state_machine_gives_the_same_state_and_restarts_from_its_snapshot()
    {
        const int snapshotInterval = 1000; // slabd's default
        var (state, log, failure) = fixture.Result;
        Assert.Null(failure);
        var expected = ClusterStateCodec.EncodeState(state);
        var root = Path.Combine(Path.GetTempPath(), "slab-scale-" + Guid.NewGuid().ToString("N")[..12]);
        var snapshots = new DirectoryInfo(Path.Combine(root, "snapshots"));
        var walOptions = new WriteAheadLog.Options { Location = Path.Combine(root, "wal") };
        try
        {
            var clock = Stopwatch.StartNew();
            await using (var machine = new ClusterStateMachine(snapshots, snapshotInterval, NullLogger.Instance))
            {
                await machine.RestoreAsync(CancellationToken.None);
                await using var wal = new WriteAheadLog(walOptions, machine);
                await AppendCommitAndApplyAsync(wal, log);
                Assert.Equal(expected, ClusterStateCodec.EncodeState(machine.Current));
            }

            output.WriteLine($"{log.Count} entries appended, committed and applied in {clock.Elapsed.TotalSeconds:F1} s");
            clock.Restart();

            // Restart: the last snapshot, then only the entries after it.
            await using (var machine = new ClusterStateMachine(snapshots, snapshotInterval, NullLogger.Instance))
            {
                await machine.RestoreAsync(CancellationToken.None);
                var fromSnapshot = machine.Current.Revision;
                var replayed = 0;
                machine.Applied += (_, _) => replayed++;
                await using var wal = new WriteAheadLog(walOptions, machine);
                await wal.InitializeAsync();
                await wal.WaitForApplyAsync(wal.LastEntryIndex);

                output.WriteLine($"restarted in {clock.Elapsed.TotalSeconds:F1} s: snapshot at revision {fromSnapshot}, {replayed} entries replayed");
                Assert.True(fromSnapshot > state.Revision - snapshotInterval, $"restored revision {fromSnapshot}: the snapshot is older than {snapshotInterval} entries");
                Assert.Equal(state.Revision, fromSnapshot + replayed);
                Assert.Equal(expected, ClusterStateCodec.EncodeState(machine.Current));
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
