using System.Net;
using System.Text.Json;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// N real slabd processes forming one cluster, like <c>scripts/cluster up N</c>: node i (1-based)
/// advertises its own address (a test-unique 127.x.y.i by default, or a NetworkLab address) with
/// default ports; nodes 1..voters are KVDB voters. Disposing stops every node and removes what each
/// made (see <see cref="SlabNode"/>).
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    private readonly List<SlabNode?> _nodes;
    private readonly HashSet<int> _joiningVoters = [];
    private readonly Func<int, string> _addressOf;
    private readonly Func<int, string?> _namespaceOf;
    private readonly Func<int, int>? _portBaseOf;
    private readonly Func<int, string[]> _extraArgumentsOf;

    private LocalCluster(int count, int voters, Func<int, string> addressOf, Func<int, string?> namespaceOf, Func<int, int>? portBaseOf, Func<int, string[]>? extraArgumentsOf)
    {
        _extraArgumentsOf = extraArgumentsOf ?? (_ => []);
        _nodes = [.. new SlabNode?[count]];
        Voters = voters;
        _addressOf = addressOf;
        _namespaceOf = namespaceOf;
        _portBaseOf = portBaseOf;
        ClusterId = "t-" + Guid.NewGuid().ToString("N")[..10];
    }

    public string ClusterId { get; }

    /// <summary>Node i's <c>--zone</c>; null = none (the default).</summary>
    public Func<int, string?> ZoneOf { get; private init; } = _ => null;

    public int Count => _nodes.Count;

    public int Voters { get; }

    /// <summary>Node <paramref name="i"/>, 1-based.</summary>
    public SlabNode this[int i] => _nodes[i - 1] ?? throw new InvalidOperationException($"node {i} was never started");

    public IEnumerable<int> Indexes => Enumerable.Range(1, Count);

    public string Address(int i) => _addressOf(i);

    /// <summary>A volume name unique to one test run.</summary>
    public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    public static string NameOf(int i) => $"node-{i}";

    /// <summary>The index of "node-i".</summary>
    public static int IndexOf(string nodeName) => int.Parse(nodeName["node-".Length..], System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The names of the nodes holding a volume's replicas, from its inspect JSON.</summary>
    public static List<string> ReplicaNodes(JsonElement volume)
        => [.. volume.GetProperty("replicas").EnumerateArray().Select(r => r.GetProperty("nodeName").GetString()!)];

    /// <summary>The data file of <paramref name="node"/>'s replica of a volume.</summary>
    public static string ReplicaFile(SlabNode node, string volumeId)
        => Directory.GetFiles(node.Root, "data", SearchOption.AllDirectories).Single(p => Path.GetFileName(Path.GetDirectoryName(p)) == volumeId);

    /// <summary>The first element of slabctl's JSON when it printed an array (inspect), else the value.</summary>
    public static JsonElement First(JsonElement json) => json.ValueKind == JsonValueKind.Array ? json[0] : json;

    /// <summary><c>volume inspect NAME --json</c> asked of node <paramref name="from"/>.</summary>
    public async Task<JsonElement> InspectAsync(int from, string name) => First(await this[from].CliJsonAsync("volume", "inspect", name));

    /// <summary>A volume's epoch from <c>volume inspect --json</c> (a 64-bit number, which protobuf's JSON prints as a string).</summary>
    public static long EpochOf(JsonElement volume)
    {
        var epoch = volume.GetProperty("epoch");
        return epoch.ValueKind == JsonValueKind.String ? long.Parse(epoch.GetString()!, System.Globalization.CultureInfo.InvariantCulture) : epoch.GetInt64();
    }

    /// <summary>A fresh 127.a.b.0/24 for one test, so clusters of parallel tests never share an address.</summary>
    public static Func<int, string> UniqueLoopback()
    {
        var a = Random.Shared.Next(100, 250);
        var b = Random.Shared.Next(1, 250);
        return i => $"127.{a}.{b}.{i}";
    }

    /// <summary>
    /// Starts nodes 1..<paramref name="count"/> (in <paramref name="order"/> when given) and waits until
    /// every node lists all of them online. Nodes listen on their own address with the default ports,
    /// or, with <paramref name="portBaseOf"/>, on <c>--port-base</c> ports (then they may share one address).
    /// <paramref name="extraArgumentsOf"/> adds slabd arguments to node i (e.g. its Docker plugin socket).
    /// </summary>
    public static async Task<LocalCluster> StartAsync(
        int count,
        int voters = 3,
        Func<int, string>? addressOf = null,
        Func<int, string?>? namespaceOf = null,
        IEnumerable<int>? order = null,
        Func<int, int>? portBaseOf = null,
        Func<int, string?>? zoneOf = null,
        Func<int, string[]>? extraArgumentsOf = null)
    {
        var cluster = new LocalCluster(count, voters, addressOf ?? UniqueLoopback(), namespaceOf ?? (_ => null), portBaseOf, extraArgumentsOf) { ZoneOf = zoneOf ?? (_ => null) };
        try
        {
            await Task.WhenAll((order ?? cluster.Indexes).Select(cluster.StartNodeAsync));
            await cluster.WaitUntilAllOnlineAsync();
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Node <paramref name="i"/>'s replication port (TCP).</summary>
    public int ReplicationPort(int i) => _portBaseOf is { } portBase ? portBase(i) + 2 : 9503;

    /// <summary>Node <paramref name="i"/>'s Raft port (TCP).</summary>
    public int RaftPort(int i) => _portBaseOf is { } portBase ? portBase(i) + 3 : 9504;

    public string[] ArgumentsOf(int i)
    {
        var peers = string.Join(',', Enumerable.Range(1, Voters).Select(v => $"{Address(v)}:{RaftPort(v)}"));
        string[] ports = _portBaseOf is { } portBase
            ? ["--port-base", portBase(i).ToString(System.Globalization.CultureInfo.InvariantCulture)]
            : ["--api-port", "9501", "--nbd-port", "10809"];
        string[] arguments =
        [
            "--cluster-id", ClusterId, "--advertise", Address(i), "--peers", peers, .. ports,
            "--node-name", NameOf(i), "--rack", $"rack-{((i - 1) % 3) + 1}", .. _extraArgumentsOf(i),
        ];
        if (ZoneOf(i) is { } zone)
        {
            arguments = [.. arguments, "--zone", zone];
        }

        return i <= Voters || _joiningVoters.Contains(i) ? [.. arguments, "--kvdb"] : arguments;
    }

    private async Task StartNodeAsync(int i)
    {
        _nodes[i - 1] = await SlabNode.StartAsync(8L << 30, _namespaceOf(i), ArgumentsOf(i));
    }

    /// <summary>
    /// Starts one more node (index <see cref="Count"/> + 1) with the same peers; with
    /// <paramref name="kvdb"/> it is a voter outside the founding set, which waits until added.
    /// </summary>
    public async Task<int> AddNodeAsync(bool kvdb)
    {
        _nodes.Add(null);
        var i = _nodes.Count;
        if (kvdb)
        {
            _joiningVoters.Add(i);
        }

        await StartNodeAsync(i);
        return i;
    }

    /// <summary>Starts a stopped node again on its own directories and identity.</summary>
    public Task RestartAsync(int i) => this[i].StartProcessAsync(ArgumentsOf(i));

    /// <summary>The nodes as <paramref name="from"/> lists them (<c>slabctl cluster list --json</c>).</summary>
    public async Task<JsonElement[]> ListNodesAsync(int from)
        => [.. (await this[from].CliJsonAsync("cluster", "list")).EnumerateArray()];

    /// <summary>Node name → status ("online", "offline", ...) as <paramref name="from"/> sees it.</summary>
    public async Task<Dictionary<string, string>> StatusesAsync(int from)
        => (await ListNodesAsync(from)).ToDictionary(n => n.GetProperty("name").GetString()!, n => n.GetProperty("status").GetString()!);

    public async Task WaitUntilAllOnlineAsync()
    {
        foreach (var i in Indexes.Where(i => this[i].Pid is not null))
        {
            await Poll.UntilAsync(
                async () =>
                {
                    var result = await this[i].CliAsync("cluster", "list", "--json");
                    if (result.ExitCode != 0)
                    {
                        return false;
                    }

                    using var list = JsonDocument.Parse(result.Stdout);
                    return list.RootElement.GetArrayLength() == Count
                        && list.RootElement.EnumerateArray().All(n => n.GetProperty("status").GetString() == "online");
                },
                TimeSpan.FromSeconds(90),
                $"every node online as {NameOf(i)} sees it");
        }
    }

    /// <summary>The index of the node that leads Raft, as node <paramref name="from"/> sees it.</summary>
    public async Task<int> LeaderAsync(int from)
    {
        var leader = (await ListNodesAsync(from)).Single(n => n.TryGetProperty("isLeader", out var l) && l.GetBoolean());
        var name = leader.GetProperty("name").GetString()!;
        return int.Parse(name["node-".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_nodes.Where(n => n is not null).Select(n => n!.DisposeAsync().AsTask()));
    }
}

/// <summary>Polls real processes (which have no event to await) until a condition holds or a deadline passes.</summary>
public static class Poll
{
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (await condition())
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds:0} s waiting for {what}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250));
        }
    }

    public static Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what)
        => UntilAsync(() => Task.FromResult(condition()), timeout, what);
}
