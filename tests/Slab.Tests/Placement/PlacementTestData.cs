using Slab.Cluster.Placement;
using Slab.Store;

namespace Slab.Tests.Placement;

internal static class PlacementTestData
{
    public const long GiB = 1L << 30;

    public static readonly IReadOnlyDictionary<string, string> NoLabels = new Dictionary<string, string>();

    /// <summary>A pool of <paramref name="totalGiB"/> with <paramref name="provisionedGiB"/> provisioned, 10% used, no overcommit.</summary>
    public static PoolInfo Pool(
        string id = "pool-0",
        long totalGiB = 100,
        long provisionedGiB = 0,
        IoPriority priority = IoPriority.Medium,
        long? usedGiB = null,
        double overcommit = 1.0,
        double fullFraction = 0.9) =>
        new(id, priority, totalGiB * GiB, (usedGiB ?? totalGiB / 10) * GiB, provisionedGiB * GiB, overcommit, fullFraction);

    /// <summary>A node named <paramref name="name"/> with id "id-NAME", addresses "10.1.L.S:9501" and "NAME.example", and one default pool unless given.</summary>
    public static NodeInfo Node(
        string name,
        string zone = "",
        string rack = "",
        NodeStatus status = NodeStatus.Online,
        IReadOnlyDictionary<string, string>? labels = null,
        params PoolInfo[] pools) =>
        new(
            "id-" + name,
            name,
            [$"10.1.{name.Length}.{name.Sum(c => c) % 250}:9501", name + ".example"],
            zone,
            rack,
            labels ?? NoLabels,
            status,
            pools.Length == 0 ? [Pool()] : pools);

    public static ClusterTopology Topology(params NodeInfo[] nodes) => new(nodes);

    public static PlacementRequest Request(int repl, long sizeGiB = 10, string volume = "vol-1") => new(volume, repl, sizeGiB * GiB);

    public static Dictionary<string, string> Labels(params string[] pairs)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            labels[pair[..eq]] = pair[(eq + 1)..];
        }

        return labels;
    }

    /// <summary>Places and asserts success; returns the chosen node ids.</summary>
    public static string[] PlaceOk(ClusterTopology topology, PlacementRequest request)
    {
        var result = PlacementEngine.Place(topology, request);
        Xunit.Assert.True(result.Succeeded, result.Failure?.ToString());
        return result.Replicas.Select(r => r.NodeId).ToArray();
    }

    /// <summary>Places and asserts a refusal of kind <paramref name="error"/>; returns the message.</summary>
    public static string PlaceFails(ClusterTopology topology, PlacementRequest request, PlacementError error)
    {
        var result = PlacementEngine.Place(topology, request);
        Xunit.Assert.False(result.Succeeded, $"expected {error}, got {result}");
        Xunit.Assert.Equal(error, result.Failure!.Error);
        Xunit.Assert.Empty(result.Replicas);
        return result.Failure.Message;
    }
}
