using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Cluster.Placement;
using Slab.Cluster.State;
using Slab.Tests.ClusterState;

namespace Slab.Bench;

/// <summary>
/// The control plane at 1,000 nodes and 16,000 volumes (<see cref="ClusterScaleScenario"/>: the
/// cluster the scale tests build, placed volume by volume through the state machine). Placement per
/// volume as the leader does it (<see cref="PlacementTopology.FromState"/>, index, place) and its parts;
/// apply throughput of placed CreateVolume commands into a state of that size, pure and from encoded
/// log entries. Through the write-ahead log: <see cref="ClusterScaleWalBenchmarks"/>.
/// The memory of the state is measured by <see cref="ClusterScaleMemory"/> (not a BenchmarkDotNet job).
/// </summary>
[MemoryDiagnoser]
public class ClusterScaleBenchmarks
{
    private const int Batch = 1000;

    private readonly ClusterScaleScenario _scenario = new();
    private ClusterState _state = ClusterState.Empty;
    private ClusterTopology _topology = null!;
    private PlacementEngine _engine = null!;
    private PlacementRequest[] _requests = [];
    private CreateVolume[] _creates = [];
    private byte[][] _entries = [];
    private int _next;

    /// <summary>
    /// Builds the cluster, then places the next <see cref="Batch"/> volumes (ids 16,000 and up) on it,
    /// as creates and as encoded log entries; every apply benchmark starts from the 16,000-volume state.
    /// </summary>
    [GlobalSetup]
    public void Setup()
    {
        var clock = Stopwatch.StartNew();
        var run = Build(_scenario);
        _state = run.State;
        _topology = TopologyOf(_scenario, _state);
        _engine = new PlacementEngine(_topology);
        _requests = [.. Enumerable.Range(ClusterScaleScenario.VolumeCount, Batch).Select(ClusterScaleScenario.Request)];
        _creates = [.. Enumerable.Range(ClusterScaleScenario.VolumeCount, Batch).Select(v => PlacedCreate(_engine, v))];
        _entries = [.. _creates.Select(c => ClusterStateCodec.EncodeProposal(new Proposal { Id = Guid.NewGuid(), Command = c }))];
        Console.WriteLine($"// cluster: {_state.Nodes.Count} nodes, {_state.Volumes.Count} volumes, {run.Log.Count} commands, built in {clock.Elapsed.TotalSeconds:F1} s");
    }

    [Benchmark(Description = "FromState (1,000 nodes, 16,000 volumes)")]
    public ClusterTopology FromState() => TopologyOf(_scenario, _state);

    [Benchmark(Description = "Leader's path per volume: FromState + index + Place")]
    public PlacementResult FromStateIndexAndPlace() => new PlacementEngine(TopologyOf(_scenario, _state)).Place(_requests[_next++ % Batch]);

    [Benchmark(Description = "Place on an indexed engine")]
    public PlacementResult Place() => _engine.Place(_requests[_next++ % Batch]);

    /// <summary>1,000 placed creates applied in a row from the 16,000-volume state (the state grows to 17,000); per command.</summary>
    [Benchmark(Description = "Apply CreateVolume x1000 in a row (pure)", OperationsPerInvoke = Batch)]
    public ClusterState ApplyCreates()
    {
        var state = _state;
        foreach (var create in _creates)
        {
            state = Accepted(ClusterStateTransitions.Apply(state, create));
        }

        return state;
    }

    /// <summary>As <see cref="ApplyCreates"/>, from encoded log entries, as the state machine applies them; per command.</summary>
    [Benchmark(Description = "Decode entry + apply CreateVolume x1000 in a row", OperationsPerInvoke = Batch)]
    public ClusterState DecodeAndApplyCreates()
    {
        var state = _state;
        foreach (var entry in _entries)
        {
            state = Accepted(ClusterStateTransitions.Apply(state, ClusterStateCodec.DecodeProposal(entry).Command));
        }

        return state;
    }

    /// <summary>The scenario's cluster; the build reads FromState before every 10th volume (the same result as before every volume, faster).</summary>
    internal static ClusterScaleScenario.Run Build(ClusterScaleScenario scenario)
    {
        var run = scenario.Build(fromStateEvery: 10);
        return run.Failure is null ? run : throw new InvalidOperationException(run.Failure);
    }

    internal static ClusterTopology TopologyOf(ClusterScaleScenario scenario, ClusterState state) => PlacementTopology.FromState(
        state, scenario.IsAlive, scenario.LiveUsage, ClusterScaleScenario.OvercommitRatio, ClusterScaleScenario.FullFraction);

    /// <summary>Volume <paramref name="v"/>'s create with the replicas the engine chooses for it.</summary>
    internal static CreateVolume PlacedCreate(PlacementEngine engine, int v)
    {
        var placed = engine.Place(ClusterScaleScenario.Request(v));
        return placed.Succeeded ? ClusterScaleScenario.Create(v, placed.Replicas) : throw new InvalidOperationException(placed.ToString());
    }

    private static ClusterState Accepted(ApplyOutcome outcome) =>
        outcome.Result.IsSuccess ? outcome.State : throw new InvalidOperationException(outcome.Result.ToString());
}

/// <summary>
/// Raft apply throughput at scale without the network: placed CreateVolume commands proposed in batches
/// of 1,000 through DotNext's <see cref="WriteAheadLog"/> (append, one commit, apply) into a
/// <see cref="ClusterStateMachine"/> that already holds <see cref="ClusterScaleScenario"/>'s
/// 16,000 volumes, with a snapshot of the whole state every 1,000 commands (slabd's default) or never.
/// One invocation per iteration, and each adds 1,000 volumes: the state grows by about 8,000 over a
/// <c>--job short</c> run.
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1, 1)]
public class ClusterScaleWalBenchmarks
{
    private const int Batch = 1000;

    private CreateVolume[] _creates = [];
    private string _walRoot = "";
    private ClusterStateMachine? _machine;
    private WriteAheadLog? _wal;
    private int _walVolume;

    /// <summary>Commands between whole-state snapshots: slabd's default, and so many that none is taken (apply and WAL alone).</summary>
    [Params(1000, 1_000_000)]
    public int SnapshotInterval { get; set; }

    /// <summary>
    /// Replays the cluster's command log through a write-ahead log in a temp directory into a
    /// <see cref="ClusterStateMachine"/> (snapshots every <see cref="SnapshotInterval"/> commands), and places
    /// the next 1,000 volumes for the benchmark to propose.
    /// </summary>
    [GlobalSetup]
    public void SetupWal()
    {
        var scenario = new ClusterScaleScenario();
        var run = ClusterScaleBenchmarks.Build(scenario);
        var engine = new PlacementEngine(ClusterScaleBenchmarks.TopologyOf(scenario, run.State));
        _creates = [.. Enumerable.Range(ClusterScaleScenario.VolumeCount, Batch).Select(v => ClusterScaleBenchmarks.PlacedCreate(engine, v))];
        _walVolume = ClusterScaleScenario.VolumeCount;
        _walRoot = Path.Combine(Path.GetTempPath(), "slab-bench-wal-" + Guid.NewGuid().ToString("N")[..12]);
        _machine = new ClusterStateMachine(new DirectoryInfo(Path.Combine(_walRoot, "snapshots")), SnapshotInterval, NullLogger.Instance);
        _machine.RestoreAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
        _wal = new WriteAheadLog(new WriteAheadLog.Options { Location = Path.Combine(_walRoot, "wal") }, _machine);
        ClusterScaleScenario.AppendCommitAndApplyAsync(_wal, run.Log).GetAwaiter().GetResult();
        Console.WriteLine($"// write-ahead log: {_machine.Current.Volumes.Count} volumes applied");
    }

    /// <summary>
    /// Proposes the next 1,000 placed volumes: encode, append to the WAL, one commit (one flush) for the
    /// batch, wait until the state machine applied them (with snapshots every 1,000, one snapshot of
    /// the whole state falls in each batch). Per command.
    /// </summary>
    [Benchmark(Description = "WAL append + commit + apply CreateVolume x1000", OperationsPerInvoke = Batch)]
    public Task WalAppendCommitApply()
    {
        var batch = new ClusterCommand[Batch];
        for (var i = 0; i < Batch; i++)
        {
            var v = _walVolume++;
            batch[i] = _creates[i] with { RequestId = $"req-{v}", VolumeId = ClusterScaleScenario.VolumeId(v), Name = ClusterScaleScenario.VolumeName(v) };
        }

        return ClusterScaleScenario.AppendCommitAndApplyAsync(_wal!, batch);
    }

    [GlobalCleanup]
    public void CleanupWal()
    {
        _wal?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _machine?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        if (_walRoot.Length > 0 && Directory.Exists(_walRoot))
        {
            Directory.Delete(_walRoot, recursive: true);
        }
    }
}

/// <summary>
/// <c>dotnet run -c Release -- cluster-scale-memory</c>: the managed heap the 1,000-node / 16,000-volume
/// state keeps alive (GC heap after a full collection, before and after), built by commands and decoded
/// from its snapshot, the size of that snapshot, and of the placement topology and engine index.
/// </summary>
public static class ClusterScaleMemory
{
    public static void Run(TextWriter output)
    {
        var scenario = new ClusterScaleScenario();
        scenario.Build(volumes: 10); // JIT, statics and pools, so the deltas below hold only the state

        var before = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();
        var state = BuildState(scenario, out var commands);
        var built = clock.Elapsed;
        var builtBytes = GC.GetTotalMemory(forceFullCollection: true) - before;

        var snapshot = ClusterStateCodec.EncodeState(state);
        before = GC.GetTotalMemory(forceFullCollection: true);
        var decoded = ClusterStateCodec.DecodeState(snapshot);
        var decodedBytes = GC.GetTotalMemory(forceFullCollection: true) - before;

        before = GC.GetTotalMemory(forceFullCollection: true);
        var topology = PlacementTopology.FromState(state, scenario.IsAlive, scenario.LiveUsage);
        var topologyBytes = GC.GetTotalMemory(forceFullCollection: true) - before;
        before = GC.GetTotalMemory(forceFullCollection: true);
        var engine = new PlacementEngine(topology);
        var engineBytes = GC.GetTotalMemory(forceFullCollection: true) - before;

        var volumes = state.Volumes.Count;
        var replicas = state.Volumes.Values.Sum(v => v.Replicas.Length);
        output.WriteLine($"cluster: {state.Nodes.Count:N0} nodes, {volumes:N0} volumes, {replicas:N0} replicas, {commands:N0} commands, built in {built.TotalSeconds:F1} s (FromState before every 10th volume)");
        output.WriteLine();
        output.WriteLine("| what | bytes | per volume |");
        output.WriteLine("|---|---:|---:|");
        output.WriteLine($"| state built by applying the commands (GC heap delta) | {builtBytes:N0} | {builtBytes / volumes:N0} |");
        output.WriteLine($"| state decoded from its snapshot (GC heap delta) | {decodedBytes:N0} | {decodedBytes / volumes:N0} |");
        output.WriteLine($"| encoded snapshot (format {ClusterStateCodec.FormatVersion}) | {snapshot.Length:N0} | {snapshot.Length / volumes:N0} |");
        output.WriteLine($"| placement topology (FromState, GC heap delta) | {topologyBytes:N0} | |");
        output.WriteLine($"| placement engine index (GC heap delta) | {engineBytes:N0} | |");
        GC.KeepAlive(decoded);
        GC.KeepAlive(engine);
    }

    /// <summary>Builds the cluster and lets go of everything but the state (the command log shares specs and replicas with it).</summary>
    private static ClusterState BuildState(ClusterScaleScenario scenario, out int commands)
    {
        var run = ClusterScaleBenchmarks.Build(scenario);
        commands = run.Log.Count;
        return run.State;
    }
}
