using System.Collections.Immutable;
using Slab.Cluster.State;
using Xunit;
using static Slab.Tests.ClusterState.ClusterStateTestData;
using CState = Slab.Cluster.State.ClusterState;

namespace Slab.Tests.ClusterState;

/// <summary>Random command sequences over small id/name pools, so commands collide often; invariants after every step.</summary>
public sealed class ClusterStatePropertyTests
{
    private static readonly string[] NodeIds = ["a", "b", "c", "d", "e"];
    private static readonly string[] VolumeNames = ["v1", "v2", "v3", "v4"];

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    [InlineData(7)]
    [InlineData(8)]
    public void Random_command_sequences_keep_the_invariants(int seed)
    {
        var random = new Random(seed);
        var commands = Enumerable.Range(0, 2000).Select(i => RandomCommand(random, i)).ToList();

        var state = CState.Empty;
        var epochs = new Dictionary<string, long>();
        var everInSync = new HashSet<string>();
        var accepted = 0;
        foreach (var command in commands)
        {
            var (next, result) = ClusterStateTransitions.Apply(state, command);
            if (result.IsSuccess)
            {
                accepted++;
                Assert.Equal(state.Revision + 1, next.Revision);
            }
            else
            {
                Assert.Same(state, next);
                Assert.NotEqual(Rejection.None, result.Rejection);
                Assert.False(string.IsNullOrWhiteSpace(result.Message));
            }

            CheckInvariants(next, epochs, everInSync);
            state = next;
        }

        Assert.True(accepted > 200, $"only {accepted} commands accepted: the generator is too hostile to test much");

        // deterministic: replaying gives a byte-equal state; the encoding round-trips
        var replay = commands.Aggregate(CState.Empty, (s, c) => ClusterStateTransitions.Apply(s, c).State);
        var bytes = ClusterStateCodec.EncodeState(state);
        Assert.Equal(bytes, ClusterStateCodec.EncodeState(replay));
        Assert.Equal(bytes, ClusterStateCodec.EncodeState(ClusterStateCodec.DecodeState(bytes)));
    }

    private static void CheckInvariants(CState state, Dictionary<string, long> epochs, HashSet<string> everInSync)
    {
        // names unique: the name index is exactly the volumes' names
        Assert.Equal(state.Volumes.Count, state.VolumeIdsByName.Count);
        foreach (var volume in state.Volumes.Values)
        {
            Assert.Equal(volume.Id, state.VolumeIdsByName[volume.Name]);

            // epochs never decrease (ids are never reused)
            if (epochs.TryGetValue(volume.Id, out var previous))
            {
                Assert.True(volume.Epoch >= previous, $"epoch of {volume.Name} went from {previous} to {volume.Epoch}");
            }

            epochs[volume.Id] = volume.Epoch;

            if (volume.Attachment is { } attachment)
            {
                Assert.True(state.Nodes.ContainsKey(attachment.NodeId), $"{volume.Name} attached on unknown node {attachment.NodeId}");
            }

            Assert.True(volume.Replicas.Length <= volume.Spec.Repl);
            Assert.Equal(volume.Replicas.Length, volume.Replicas.Select(r => r.NodeId).Distinct().Count());
            foreach (var replica in volume.Replicas)
            {
                Assert.True(state.Nodes.ContainsKey(replica.NodeId), $"{volume.Name} has a replica on unknown node {replica.NodeId}");
            }

            // once a volume has had an in-sync replica it always keeps one
            var hasInSync = volume.Replicas.Any(r => r.State == ReplicaState.InSync);
            if (hasInSync)
            {
                everInSync.Add(volume.Id);
            }
            else
            {
                Assert.DoesNotContain(volume.Id, everInSync);
            }

            Assert.Equal(volume.Snapshots.Length, volume.Snapshots.Select(s => s.Name).Distinct().Count());
        }

        Assert.Equal(state.Nodes.Count, state.Nodes.Values.Select(n => n.Name).Distinct().Count());
    }

    private static ClusterCommand RandomCommand(Random random, int sequence)
    {
        string NodeId() => NodeIds[random.Next(NodeIds.Length)];
        string Vol() => VolumeNames[random.Next(VolumeNames.Length)];
        ReplicaState State() => (ReplicaState)random.Next(3);
        ImmutableArray<ReplicaInfo> Replicas() =>
            [.. NodeIds.OrderBy(_ => random.Next()).Take(random.Next(4)).Select(n => Replica(n, State()))];

        var at = T0.AddSeconds(sequence);
        return random.Next(14) switch
        {
            0 or 1 => Node(NodeId(), name: random.Next(10) == 0 ? "dup-name" : null) with { Timestamp = at },
            2 => new SetNodeStatus { NodeId = NodeId(), Status = (NodeStatus)random.Next(4), Timestamp = at },
            3 => new RemoveNode { NodeId = NodeId(), Timestamp = at },
            4 or 5 => Volume(Vol(), requestId: $"r{random.Next(6)}", repl: 1 + random.Next(3)) with
            {
                VolumeId = $"id-{sequence}",
                Replicas = random.Next(2) == 0 ? [] : Replicas(),
                Timestamp = at,
            },
            6 => new DeleteVolume { Volume = Vol(), Timestamp = at },
            7 => new UpdateVolume { Volume = Vol(), SizeBytes = 4096L * random.Next(1, 1 << 20), Timestamp = at },
            8 => new SetReplicaSet { Volume = Vol(), Replicas = Replicas(), Timestamp = at },
            9 or 10 => new SetReplicaState { Volume = Vol(), NodeId = NodeId(), State = State(), Timestamp = at },
            11 => new AttachVolume
            {
                Volume = Vol(),
                NodeId = NodeId(),
                Device = "/dev/nbd" + random.Next(8),
                TakeOverFrom = random.Next(2) == 0 ? NodeId() : null,
                Timestamp = at,
            },
            12 => new DetachVolume { Volume = Vol(), NodeId = NodeId(), Timestamp = at },
            _ => random.Next(2) == 0
                ? new CreateSnapshot { Volume = Vol(), SnapshotId = $"s{sequence}", Name = $"snap{random.Next(3)}", Timestamp = at }
                : new DeleteSnapshot { Volume = Vol(), Snapshot = $"snap{random.Next(3)}", Timestamp = at },
        };
    }
}
