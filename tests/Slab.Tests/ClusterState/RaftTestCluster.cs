using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Cluster.State;

namespace Slab.Tests.ClusterState;

/// <summary>
/// Voters on loopback addresses of their own with picked-free ports and temp data directories. Disposing stops every
/// running node and removes the directories, also when the test failed.
/// </summary>
internal sealed class RaftTestCluster : IAsyncDisposable
{
    public static readonly TimeSpan LeaderTimeout = TimeSpan.FromSeconds(15);
    public static readonly TimeSpan NoQuorumTimeout = TimeSpan.FromSeconds(2);

    private readonly List<ClusterStateNode> _all = [];

    private RaftTestCluster(string root, ClusterPeer[] peers)
    {
        Root = root;
        Peers = peers;
        Nodes = new ClusterStateNode?[peers.Length];
    }

    public string Root { get; }

    public ClusterPeer[] Peers { get; }

    /// <summary>Running node per member index; null while stopped.</summary>
    public ClusterStateNode?[] Nodes { get; }

    public IEnumerable<ClusterStateNode> Running => Nodes.OfType<ClusterStateNode>();

    public static RaftTestCluster Create(int voters)
    {
        var root = Path.Combine(Path.GetTempPath(), "slab-raft-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var peers = Enumerable.Range(0, voters)
            .Select(i => new ClusterPeer($"m{i}", FreeEndPoint(), FreeEndPoint()))
            .ToArray();
        return new RaftTestCluster(root, peers);
    }

    /// <summary>
    /// A free port on a loopback address of its own (127.a.b.c): between this pick and the voter's bind,
    /// another test's outgoing connection may take the port on 127.0.0.1 ("address already in use"),
    /// never on this address.
    /// </summary>
    public static IPEndPoint FreeEndPoint()
    {
        var address = new IPAddress([127, (byte)Random.Shared.Next(100, 250), (byte)Random.Shared.Next(1, 250), (byte)Random.Shared.Next(1, 250)]);
        using var listener = new TcpListener(address, 0);
        listener.Start();
        return (IPEndPoint)listener.LocalEndpoint;
    }

    public ClusterStateNodeOptions Options(int index) => OptionsFor(Peers[index]);

    public ClusterStateNodeOptions OptionsFor(ClusterPeer peer, bool joinExisting = false) => new()
    {
        MemberId = peer.MemberId,
        RaftEndPoint = peer.RaftEndPoint,
        ProposalEndPoint = peer.ProposalEndPoint,
        Peers = Peers,
        DataDirectory = Path.Combine(Root, peer.MemberId),
        JoinExisting = joinExisting,
        LowerElectionTimeout = TimeSpan.FromMilliseconds(200),
        UpperElectionTimeout = TimeSpan.FromMilliseconds(400),
        NoQuorumTimeout = NoQuorumTimeout,
        ProposeTimeout = TimeSpan.FromSeconds(10),
        SnapshotInterval = 5, // snapshot often, so restarts go through snapshot + WAL replay
    };

    public async Task<ClusterStateNode> StartAsync(int index)
    {
        var node = await StartAsync(Options(index));
        Nodes[index] = node;
        return node;
    }

    public async Task<ClusterStateNode> StartAsync(ClusterStateNodeOptions options)
    {
        var node = new ClusterStateNode(options, NullLoggerFactory.Instance, TimeProvider.System);
        _all.Add(node);
        await node.StartAsync(CancellationToken.None);
        return node;
    }

    public async Task StopAsync(int index)
    {
        if (Nodes[index] is { } node)
        {
            Nodes[index] = null;
            await node.DisposeAsync();
        }
    }

    public int IndexOf(ClusterStateNode node) => Array.IndexOf(Nodes, node);

    /// <summary>Waits until every running node agrees on one leader that is running and ready; returns it.</summary>
    public Task<ClusterStateNode> WaitForLeaderAsync() =>
        WaitAsync(
            () =>
            {
                var running = Running.ToList();
                var leader = running.FirstOrDefault(n => n.IsLeader);
                return leader is not null && running.All(n => n.LeaderId == leader.MemberId) ? leader : null;
            },
            LeaderTimeout,
            "a leader all running nodes agree on");

    /// <summary>Waits until <paramref name="condition"/> holds on every running node.</summary>
    public Task WaitForAllAsync(Func<Cluster.State.ClusterState, bool> condition, string what) =>
        WaitAsync(() => Running.All(n => condition(n.Current)) ? this : null, LeaderTimeout, what);

    /// <summary>
    /// Bounded wait for a condition: re-checked whenever any running node applies a command or sees a
    /// leader change, and every 25 ms for changes that raise no event (a leader becoming ready).
    /// </summary>
    public async Task<T> WaitAsync<T>(Func<T?> probe, TimeSpan timeout, string what)
        where T : class
    {
        using var deadline = new CancellationTokenSource(timeout);
        var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChange() => Volatile.Read(ref changed).TrySetResult();
        var stateHandler = new EventHandler<ClusterStateChangedEventArgs>((_, _) => OnChange());
        var leaderHandler = new EventHandler<string?>((_, _) => OnChange());
        var watched = Running.ToList();
        foreach (var node in watched)
        {
            node.StateChanged += stateHandler;
            node.LeaderChanged += leaderHandler;
        }

        try
        {
            while (true)
            {
                var signal = Volatile.Read(ref changed).Task;
                if (probe() is { } value)
                {
                    return value;
                }

                try
                {
                    await Task.WhenAny(signal, Task.Delay(25, deadline.Token)).WaitAsync(deadline.Token);
                }
                catch (OperationCanceledException)
                {
                    throw new TimeoutException($"no {what} within {timeout.TotalSeconds} s; members: " +
                        string.Join("; ", Running.Select(n => $"{n.MemberId} leader={n.LeaderId ?? "none"} rev={n.Current.Revision}")));
                }

                if (signal.IsCompleted)
                {
                    Interlocked.Exchange(ref changed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
                }
            }
        }
        finally
        {
            foreach (var node in watched)
            {
                node.StateChanged -= stateHandler;
                node.LeaderChanged -= leaderHandler;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _all)
        {
            try
            {
                await node.DisposeAsync();
            }
            catch (Exception)
            {
                // keep disposing the others; the directory goes regardless
            }
        }

        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
