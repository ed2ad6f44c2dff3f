using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Cluster.Membership;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.Membership;

/// <summary>Real UDP on loopback; the clock is manual, so heartbeats and silence are driven by the test.</summary>
public sealed class GossipMembershipTests : IAsyncDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);
    private readonly ManualTimeProvider _time = new();
    private readonly List<GossipMembership> _nodes = [];
    private readonly SemaphoreSlim _processed = new(0);

    [Fact]
    public async Task Nodes_find_each_other_through_a_seed_and_a_silent_node_goes_offline_then_returns()
    {
        var a = await StartAsync("node-a");
        var b = await StartAsync("node-b", a.LocalEndPoint);
        var c = await StartAsync("node-c", a.LocalEndPoint);
        await RunUntilAsync(() => AllSee([a, b, c], "node-a", "node-b", "node-c"));

        // Stats travel with heartbeats, also to nodes that only hear of a node through others.
        await RunUntilAsync(() => b.Find("node-c") is { Stats.VolumeCount: 3 } && a.Find("node-b") is { Stats.VolumeCount: 2 }, a, b, c);
        Assert.Equal(3, a.Members.Count);
        Assert.True(a.Find("node-a")!.IsLocal);

        var offline = new TaskCompletionSource<MemberView>(TaskCreationOptions.RunContinuationsAsynchronously);
        a.MemberChanged += (_, view) =>
        {
            if (view.NodeId == "node-c" && !view.IsAlive)
            {
                offline.TrySetResult(view);
            }
        };
        await StopAsync(c);
        var oldEndPoint = a.Find("node-c")!.GossipEndPoint;
        await RunUntilAsync(() => !a.IsAlive("node-c") && !b.IsAlive("node-c"), a, b);
        Assert.False((await offline.Task.WaitAsync(TestData.Patience)).IsAlive);
        Assert.True(a.IsAlive("node-b") && b.IsAlive("node-a"), "the live nodes must keep seeing each other");

        // The same node id comes back from another port (a restarted slabd): a newer generation wins.
        var back = await StartAsync("node-c", a.LocalEndPoint);
        await RunUntilAsync(() => AllSee([a, b, back], "node-a", "node-b", "node-c"));
        Assert.Equal(back.LocalEndPoint, a.Find("node-c")!.GossipEndPoint);
        Assert.NotEqual(oldEndPoint, back.LocalEndPoint);
    }

    [Fact]
    public async Task Garbage_and_foreign_datagrams_are_dropped_and_counted_and_silent_nodes_are_forgotten()
    {
        var a = await StartAsync("node-a");
        using var peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var peerEndPoint = (IPEndPoint)peer.LocalEndPoint!;

        await SendAsync(peer, a, TestData.Pattern(300, 1));
        await SendAsync(peer, a, Datagram("other-cluster", "node-x", peerEndPoint, 1));
        await SendAsync(peer, a, Datagram("c1", "node-x", peerEndPoint, 1)[..40]);
        Assert.Equal(3, a.DroppedDatagrams);
        Assert.Null(a.Find("node-x"));

        await SendAsync(peer, a, Datagram("c1", "node-x", peerEndPoint, 5));
        Assert.True(a.IsAlive("node-x"));
        Assert.Equal(9, a.Find("node-x")!.Stats.VolumeCount);

        // An older heartbeat does not refresh the node.
        await SendAsync(peer, a, Datagram("c1", "node-x", peerEndPoint, 4));
        Assert.Equal(5, a.Find("node-x")!.Heartbeat);

        _time.Advance(TimeSpan.FromSeconds(4));
        Assert.False(a.IsAlive("node-x"));
        Assert.NotNull(a.Find("node-x"));
        _time.Advance(TimeSpan.FromHours(2));
        Assert.Null(a.Find("node-x"));
        Assert.Equal(3, a.DroppedDatagrams);
    }

    [Fact]
    public async Task An_endpoint_in_use_is_a_clear_error()
    {
        var a = await StartAsync("node-a");
        await using var clash = new GossipMembership(Options("node-b", a.LocalEndPoint), Stats(1), _time, NullLoggerFactory.Instance);
        var error = await Assert.ThrowsAsync<Common.SlabException>(() => clash.StartAsync(default));
        Assert.Contains("cannot bind the gossip endpoint", error.Message, StringComparison.Ordinal);
    }

    private static GossipOptions Options(string nodeId, IPEndPoint bind, params IPEndPoint[] seeds) => new()
    {
        ClusterId = "c1",
        NodeId = nodeId,
        BindEndPoint = bind,
        Seeds = [.. seeds],
        Interval = Interval,
        OfflineAfter = TimeSpan.FromSeconds(3),
        ForgetAfter = TimeSpan.FromHours(1),
    };

    private static Func<NodeStats> Stats(int volumes) => () => new NodeStats { TotalBytes = 1 << 30, VolumeCount = volumes };

    private async Task<GossipMembership> StartAsync(string nodeId, params IPEndPoint[] seeds)
    {
        var volumes = nodeId[^1] - 'a' + 1;
        var node = new GossipMembership(Options(nodeId, new IPEndPoint(IPAddress.Loopback, 0), seeds), Stats(volumes), _time, NullLoggerFactory.Instance);
        node.DatagramProcessed += () => _processed.Release();
        _nodes.Add(node);
        await node.StartAsync(default);
        return node;
    }

    private async Task StopAsync(GossipMembership node)
    {
        _nodes.Remove(node);
        await node.DisposeAsync();
    }

    /// <summary>
    /// One heartbeat everywhere, then waits until every node in <paramref name="mustHear"/> (or, when
    /// empty, any node) handled a datagram sent after it, so the clock never runs ahead of delivery.
    /// </summary>
    private async Task StepAsync(GossipMembership[] mustHear)
    {
        var watched = mustHear.Length > 0 ? mustHear : [.. _nodes];
        var before = watched.Select(Handled).ToArray();
        _time.Advance(Interval);
        bool Done() => mustHear.Length > 0
            ? watched.Select((n, i) => Handled(n) > before[i]).All(x => x)
            : watched.Select((n, i) => Handled(n) > before[i]).Any(x => x);
        while (!Done())
        {
            Assert.True(await _processed.WaitAsync(TestData.Patience), "no gossip datagram arrived after a heartbeat");
        }
    }

    private static long Handled(GossipMembership node) => node.ReceivedDatagrams + node.DroppedDatagrams;

    private async Task RunUntilAsync(Func<bool> condition, params GossipMembership[] mustHear)
    {
        for (var round = 0; round < 200 && !condition(); round++)
        {
            await StepAsync(mustHear);
        }

        Assert.True(condition(), "gossip did not converge within 200 heartbeats");
    }

    private static bool AllSee(GossipMembership[] nodes, params string[] ids)
        => nodes.All(n => ids.All(n.IsAlive) && n.Members.Count == ids.Length);

    private async Task SendAsync(Socket peer, GossipMembership to, byte[] datagram)
    {
        await peer.SendToAsync(datagram, SocketFlags.None, to.LocalEndPoint);
        Assert.True(await _processed.WaitAsync(TestData.Patience), "the datagram was not handled");
    }

    private static byte[] Datagram(string cluster, string nodeId, IPEndPoint endPoint, long heartbeat)
    {
        var buffer = new byte[1400];
        var writer = GossipCodec.StartWriting(buffer, cluster);
        writer.TryAdd(nodeId, endPoint, 1, heartbeat, new NodeStats { VolumeCount = 9 });
        return buffer[..writer.Finish()];
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes)
        {
            await node.DisposeAsync();
        }

        _processed.Dispose();
    }
}
