using System.Collections.Immutable;
using Slab.Cluster.State;
using Slab.Store;
using Xunit;
using CState = Slab.Cluster.State.ClusterState;

namespace Slab.Tests.ClusterState;

/// <summary>Builders for cluster states and commands used by the pure and Raft tests.</summary>
internal static class ClusterStateTestData
{
    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public static RegisterNode Node(string id, string? name = null, string zone = "z1", ImmutableSortedDictionary<string, string>? labels = null) => new()
    {
        NodeId = id,
        Name = name ?? "node-" + id,
        Addresses = [$"10.0.0.{id.Length}:9501"],
        Zone = zone,
        Rack = "r1",
        Labels = labels ?? ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal),
        Pools = [new PoolSummary { Id = "pool-" + id, IoPriority = IoPriority.High, TotalBytes = 1L << 40 }],
        Timestamp = T0,
    };

    public static CreateVolume Volume(string name, string? requestId = null, int repl = 3, long size = 1L << 30, params string[] inSyncNodes) => new()
    {
        RequestId = requestId ?? "req-" + name,
        VolumeId = "vol-" + name + "-" + (requestId ?? "r"),
        Name = name,
        Spec = new VolumeSpec { SizeBytes = size, Repl = repl },
        Replicas = [.. inSyncNodes.Select(n => Replica(n, ReplicaState.InSync))],
        Timestamp = T0,
    };

    public static ReplicaInfo Replica(string node, ReplicaState state) => new() { NodeId = node, PoolId = "pool-" + node, State = state };

    /// <summary>Applies commands in order to the empty state, asserting each succeeds.</summary>
    public static CState Build(params ClusterCommand[] commands) => Build(CState.Empty, commands);

    /// <summary>Applies commands in order to <paramref name="state"/>, asserting each succeeds.</summary>
    public static CState Build(CState state, params ClusterCommand[] commands)
    {
        foreach (var command in commands)
        {
            var (next, result) = ClusterStateTransitions.Apply(state, command);
            Assert.True(result.IsSuccess, $"{command.GetType().Name}: {result}");
            state = next;
        }

        return state;
    }

    /// <summary>Three online nodes a, b, c and volume "v1" (repl 3) with in-sync replicas on a and b.</summary>
    public static CState ThreeNodesOneVolume() =>
        Build(Node("a"), Node("b"), Node("c"), Volume("v1", inSyncNodes: ["a", "b"]));
}
