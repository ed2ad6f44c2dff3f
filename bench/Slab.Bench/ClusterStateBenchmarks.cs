using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using Slab.Cluster.State;
using Slab.Store;

namespace Slab.Bench;

/// <summary>
/// The pure cluster-state transition and its encodings at cluster scale: 1,000 nodes, 16,000
/// volumes (repl 3, one in three attached, one snapshot each). Each apply benchmark applies one
/// command to that fixed state (commands/s = 1 / mean); the codec benchmarks encode and decode the
/// whole state, i.e. one Raft snapshot.
/// </summary>
[MemoryDiagnoser]
public class ClusterStateBenchmarks
{
    private const int NodeCount = 1000;
    private const int VolumeCount = 16000;
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private ClusterState _state = ClusterState.Empty;
    private byte[] _encoded = [];
    private byte[] _createProposal = [];
    private CreateVolume _create = null!;
    private CreateVolume _duplicate = null!;
    private AttachVolume _attach = null!;
    private SetReplicaState _replicaOut = null!;
    private UpdateVolume _grow = null!;

    [GlobalSetup]
    public void Setup()
    {
        var state = ClusterState.Empty;
        for (var n = 0; n < NodeCount; n++)
        {
            state = Must(state, new RegisterNode
            {
                NodeId = $"node{n:D4}",
                Name = $"host-{n:D4}",
                Addresses = [$"10.{n / 250}.{n % 250}.1:9501"],
                Zone = $"zone{n % 3}",
                Rack = $"rack{n % 20}",
                Pools = [new PoolSummary { Id = $"pool{n:D4}", IoPriority = IoPriority.High, TotalBytes = 8L << 40 }],
                IsKvdbVoter = n < 3,
                Timestamp = T0,
            });
        }

        for (var v = 0; v < VolumeCount; v++)
        {
            var id = $"{v:x32}";
            state = Must(state, new CreateVolume
            {
                RequestId = $"req{v}",
                VolumeId = id,
                Name = $"pvc-{v:D6}",
                Spec = new VolumeSpec
                {
                    SizeBytes = 10L << 30,
                    Repl = 3,
                    Labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("namespace", $"ns{v % 50}")]),
                },
                Replicas = [.. Enumerable.Range(0, 3).Select(r => Replica((v + (r * 337)) % NodeCount, ReplicaState.InSync))],
                Timestamp = T0,
            });
            if (v % 3 == 0)
            {
                state = Must(state, new AttachVolume { Volume = id, NodeId = $"node{v % NodeCount:D4}", Device = "/dev/nbd0", Timestamp = T0 });
            }

            state = Must(state, new CreateSnapshot { Volume = id, SnapshotId = $"s{v}", Name = "daily", Timestamp = T0 });
        }

        _state = state;
        _encoded = ClusterStateCodec.EncodeState(state);
        Console.WriteLine($"// cluster state: {NodeCount} nodes, {VolumeCount} volumes, snapshot {_encoded.Length:N0} bytes");

        _create = new CreateVolume
        {
            RequestId = "new",
            VolumeId = "new-volume",
            Name = "pvc-new",
            Spec = new VolumeSpec { SizeBytes = 1L << 30, Repl = 3 },
            Replicas = [Replica(1, ReplicaState.InSync), Replica(2, ReplicaState.CatchingUp), Replica(3, ReplicaState.CatchingUp)],
            Timestamp = T0,
        };
        _duplicate = _create with { Name = "pvc-000042" };
        _attach = new AttachVolume { Volume = "pvc-000001", NodeId = "node0500", Device = "/dev/nbd1", Timestamp = T0 };
        _replicaOut = new SetReplicaState { Volume = "pvc-000002", NodeId = "node0339", State = ReplicaState.Out, Timestamp = T0 };
        _grow = new UpdateVolume { Volume = $"{7:x32}", SizeBytes = 20L << 30, Timestamp = T0 };
        _createProposal = ClusterStateCodec.EncodeProposal(new Proposal { Id = Guid.NewGuid(), Command = _create });

        Check(_attach);
        Check(_replicaOut);
        Check(_grow);
    }

    [Benchmark(Description = "Apply CreateVolume (name + placement checks)")]
    public ApplyOutcome ApplyCreate() => ClusterStateTransitions.Apply(_state, _create);

    [Benchmark(Description = "Apply CreateVolume rejected (AlreadyExists)")]
    public ApplyOutcome ApplyDuplicateCreate() => ClusterStateTransitions.Apply(_state, _duplicate);

    [Benchmark(Description = "Apply AttachVolume")]
    public ApplyOutcome ApplyAttach() => ClusterStateTransitions.Apply(_state, _attach);

    [Benchmark(Description = "Apply SetReplicaState (epoch bump)")]
    public ApplyOutcome ApplyReplicaOut() => ClusterStateTransitions.Apply(_state, _replicaOut);

    [Benchmark(Description = "Apply UpdateVolume (grow, by id)")]
    public ApplyOutcome ApplyGrow() => ClusterStateTransitions.Apply(_state, _grow);

    [Benchmark(Description = "Log entry: decode proposal + apply")]
    public ApplyOutcome DecodeAndApply() => ClusterStateTransitions.Apply(_state, ClusterStateCodec.DecodeProposal(_createProposal).Command);

    [Benchmark(Description = "Snapshot encode (whole state)")]
    public byte[] EncodeSnapshot() => ClusterStateCodec.EncodeState(_state);

    [Benchmark(Description = "Snapshot decode (whole state)")]
    public ClusterState DecodeSnapshot() => ClusterStateCodec.DecodeState(_encoded);

    private static ReplicaInfo Replica(int node, ReplicaState state) =>
        new() { NodeId = $"node{node:D4}", PoolId = $"pool{node:D4}", State = state };

    private void Check(ClusterCommand command)
    {
        if (!ClusterStateTransitions.Apply(_state, command).Result.IsSuccess)
        {
            throw new InvalidOperationException($"benchmark command {command} is rejected");
        }
    }

    private static ClusterState Must(ClusterState state, ClusterCommand command)
    {
        var (next, result) = ClusterStateTransitions.Apply(state, command);
        return result.IsSuccess ? next : throw new InvalidOperationException(result.ToString());
    }
}
