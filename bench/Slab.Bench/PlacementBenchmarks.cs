using BenchmarkDotNet.Attributes;
using Slab.Cluster.Placement;
using Slab.Store;

namespace Slab.Bench;

/// <summary>
/// Replica placement on a 1,000-node topology (10 zones x 5 racks x 20 nodes, one 4 TiB pool each,
/// some partly provisioned). One operation places one volume on a prebuilt engine; the volume id
/// changes every call so the hash tie-break does not always pick the same nodes. Also: the cost of
/// indexing a topology (a new engine), paid once per cluster-state change.
/// </summary>
[MemoryDiagnoser]
public class PlacementBenchmarks
{
    private const long GiB = 1L << 30;
    private const long TiB = 1L << 40;

    private ClusterTopology _topology = null!;
    private PlacementEngine _engine = null!;
    private PlacementRequest[] _requests = null!;
    private int _next;

    [Params(1, 3)]
    public int Repl { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(42);
        var nodes = new NodeInfo[1000];
        for (var i = 0; i < nodes.Length; i++)
        {
            var zone = i % 10;
            var rack = i / 10 % 5;
            nodes[i] = new NodeInfo(
                $"node-{i:d4}",
                $"host-{i:d4}",
                [$"10.{zone}.{rack}.{i % 250}:9501"],
                $"zone-{zone}",
                $"rack-{rack}",
                new Dictionary<string, string> { ["zone"] = $"zone-{zone}" },
                i % 50 == 7 ? NodeStatus.Offline : NodeStatus.Online,
                [new PoolInfo("pool-0", (IoPriority)(i % 3), 4 * TiB, random.NextInt64(0, 1 * TiB), random.NextInt64(0, 6 * TiB), 2.0, 0.9)]);
        }

        _topology = new ClusterTopology(nodes);
        _engine = new PlacementEngine(_topology);
        _requests = new PlacementRequest[1024];
        for (var i = 0; i < _requests.Length; i++)
        {
            _requests[i] = new PlacementRequest($"vol-{i:x8}", Repl, random.NextInt64(1, 200) * GiB)
            {
                IoPriority = i % 2 == 0 ? null : (IoPriority)(i % 3),
            };
        }
    }

    [Benchmark(Description = "Place one volume (1,000 nodes)")]
    public PlacementResult Place() => _engine.Place(_requests[_next++ & 1023]);

    [Benchmark(Description = "Place one volume with --nodes (20 names)")]
    public PlacementResult PlaceWithSelector() => _engine.Place(_requests[_next++ & 1023] with { NodeSelector = Selector });

    [Benchmark(Description = "Index the topology (new engine)")]
    public PlacementEngine Index() => new(_topology);

    private static readonly string[] Selector = [.. Enumerable.Range(0, 20).Select(i => $"host-{i * 37:d4}")];
}
