using System.Net;
using System.Net.Sockets;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// The partition fixture itself: nodes reach each other over the switch, cuts and isolation drop
/// packets silently and heal, processes run in their node's namespace, and nothing is left behind.
/// </summary>
public sealed class NetworkLabTests
{
    private const int Port = 7411;

    /// <summary>
    /// How long a connect across a cut is given before the test calls it dropped. Nothing can answer
    /// it (the SYN ends in the sink, which the test checks), so this bounds the wait, it does not
    /// order events; a connect that works takes well under a millisecond on a veth.
    /// </summary>
    private static readonly TimeSpan DroppedWithin = TimeSpan.FromSeconds(1);

    [NetworkLabFact]
    public async Task Nodes_reach_each_other_and_a_cut_drops_packets_both_ways_until_healed()
    {
        await using var lab = await NetworkLab.CreateAsync(3, NetworkLab.NewPrefix());
        await using var listeners = Listeners.Start(lab);

        Assert.True(await ConnectsAsync(lab, 0, 1, TestData.Patience));
        Assert.True(await ConnectsAsync(lab, 1, 0, TestData.Patience));
        var (established, acceptance) = await ConnectAsync(lab, listeners, 0, 1);
        using var client = established;
        using var accepted = await acceptance;

        await lab.CutAsync(0, 1);
        var sinked = await lab.SinkedPacketsAsync(0);
        Assert.False(await ConnectsAsync(lab, 0, 1, DroppedWithin));
        Assert.True(await lab.SinkedPacketsAsync(0) > sinked, "the SYN did not go into node 0's sink");
        Assert.False(await ConnectsAsync(lab, 1, 0, DroppedWithin));
        Assert.True(await ConnectsAsync(lab, 0, 2, TestData.Patience));
        Assert.True(await ConnectsAsync(lab, 2, 1, TestData.Patience));

        // A connection open across the cut survives it: what was sent meanwhile arrives after the heal.
        var message = "across the partition"u8.ToArray();
        await client.SendAsync(message);
        await lab.HealAsync(0, 1);
        var received = new byte[message.Length];
        using (var timeout = new CancellationTokenSource(TestData.Patience))
        {
            var filled = 0;
            while (filled < received.Length)
            {
                var n = await accepted.ReceiveAsync(received.AsMemory(filled), SocketFlags.None, timeout.Token);
                Assert.True(n > 0, "the connection was closed across the partition");
                filled += n;
            }
        }

        Assert.Equal(message, received);
        Assert.True(await ConnectsAsync(lab, 0, 1, TestData.Patience));
        Assert.True(await ConnectsAsync(lab, 1, 0, TestData.Patience));
    }

    [NetworkLabFact]
    public async Task Isolation_and_pair_cuts_overlap_and_undo_separately()
    {
        await using var lab = await NetworkLab.CreateAsync(3, NetworkLab.NewPrefix());
        await using var listeners = Listeners.Start(lab);

        await lab.IsolateAsync(2);
        Assert.False(await ConnectsAsync(lab, 0, 2, DroppedWithin));
        Assert.False(await ConnectsAsync(lab, 2, 1, DroppedWithin));
        Assert.True(await ConnectsAsync(lab, 0, 1, TestData.Patience));

        await lab.CutAsync(0, 2);
        await lab.RejoinAsync(2);
        Assert.True(await ConnectsAsync(lab, 1, 2, TestData.Patience));
        Assert.False(await ConnectsAsync(lab, 2, 0, DroppedWithin));

        await lab.PartitionAsync(0);
        Assert.False(await ConnectsAsync(lab, 1, 0, DroppedWithin));
        Assert.True(await ConnectsAsync(lab, 1, 2, TestData.Patience));

        await lab.HealAllAsync();
        for (var from = 0; from < 3; from++)
        {
            for (var to = 0; to < 3; to++)
            {
                if (from != to)
                {
                    Assert.True(await ConnectsAsync(lab, from, to, TestData.Patience), $"{from} -> {to}");
                }
            }
        }
    }

    [NetworkLabFact]
    public async Task Processes_run_in_their_node_namespace_and_dispose_removes_everything()
    {
        var lab = await NetworkLab.CreateAsync(2, NetworkLab.NewPrefix());
        var names = new[] { lab.NamespaceName(0), lab.NamespaceName(1), lab.SwitchNamespace };
        try
        {
            Assert.All(names, name => Assert.True(name.Length <= 15, name));
            Assert.Subset((await NetworkLab.ListNamespacesAsync()).ToHashSet(), names.ToHashSet());

            // A command runs in its node's namespace: it has the node's address and reaches other nodes.
            var addresses = await lab.ExecAsync(0, "ip", "-4", "-o", "addr", "show", "dev", "eth0");
            Assert.Equal(0, addresses.ExitCode);
            Assert.Contains($"inet {lab.Address(0)}/24", addresses.Stdout);
            await using (Listeners.Start(lab))
            {
                var connect = await lab.ExecAsync(0, "bash", "-c", $"echo hello > /dev/tcp/{lab.Address(1)}/{Port}");
                Assert.True(connect.ExitCode == 0, connect.ToString());
            }

            // A long-running process: echoes its input, lives in node 1's namespace.
            var echoed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var cat = lab.StartProcess(1, "cat", [], line =>
            {
                if (line == "ping")
                {
                    echoed.TrySetResult();
                }
            });
            var pid = cat.Id;
            await cat.StandardInput.WriteLineAsync("ping");
            await cat.StandardInput.FlushAsync();
            await echoed.Task.WaitAsync(TestData.Patience);
            Assert.Contains("ping", lab.OutputOf(cat));
            var identify = await HostCommand.RunAsync("ip", ["netns", "identify", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.Equal(lab.NamespaceName(1), identify.Stdout.Trim());

            await lab.DisposeAsync();
            Assert.False(Directory.Exists($"/proc/{pid}"), "the started process outlived the lab");
            Assert.Empty((await NetworkLab.ListNamespacesAsync()).Intersect(names));
            await lab.DisposeAsync(); // idempotent
        }
        finally
        {
            await lab.DisposeAsync();
        }
    }

    [NetworkLabFact]
    public async Task Leftovers_of_a_crashed_run_are_removed()
    {
        var prefix = NetworkLab.NewPrefix();
        try
        {
            // What a run killed mid-test leaves: namespaces and an owner record of a dead owner
            // (our pid with another start time is a process that no longer exists).
            await HostCommand.CheckedAsync("ip", "netns", "add", $"{prefix}-n0");
            await HostCommand.CheckedAsync("ip", "netns", "add", $"{prefix}-sw");
            Directory.CreateDirectory("/run/slab-netlab");
            await File.WriteAllTextAsync($"/run/slab-netlab/{prefix}", $"{Environment.ProcessId} 0");

            await NetworkLab.RemoveAbandonedAsync();
            Assert.DoesNotContain(await NetworkLab.ListNamespacesAsync(), name => name.StartsWith(prefix + "-", StringComparison.Ordinal));
            Assert.False(File.Exists($"/run/slab-netlab/{prefix}"));

            // And by prefix, as CreateAsync does first.
            await HostCommand.CheckedAsync("ip", "netns", "add", $"{prefix}-n1");
            await using (var lab = await NetworkLab.CreateAsync(1, prefix))
            {
                Assert.DoesNotContain(await NetworkLab.ListNamespacesAsync(), name => name == $"{prefix}-n1");
                Assert.StartsWith($"{Environment.ProcessId} ", await File.ReadAllTextAsync($"/run/slab-netlab/{prefix}"));
            }

            Assert.False(File.Exists($"/run/slab-netlab/{prefix}"));
        }
        finally
        {
            await NetworkLab.RemoveStaleAsync(prefix);
        }
    }

    /// <summary>True when a TCP connect from <paramref name="from"/> to <paramref name="to"/> completes within <paramref name="within"/>.</summary>
    private static async Task<bool> ConnectsAsync(NetworkLab lab, int from, int to, TimeSpan within)
    {
        using var socket = lab.CreateSocket(from);
        using var timeout = new CancellationTokenSource(within);
        try
        {
            await socket.ConnectAsync(new IPEndPoint(lab.Address(to), Port), timeout.Token);
            return true;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>A connection from <paramref name="from"/> to <paramref name="to"/> and the accepting side's socket.</summary>
    private static async Task<(Socket Client, Task<Socket> Accepted)> ConnectAsync(NetworkLab lab, Listeners listeners, int from, int to)
    {
        var socket = lab.CreateSocket(from);
        try
        {
            // Bound first, so the listener can tell this connection from earlier ones still queued.
            socket.Bind(new IPEndPoint(lab.Address(from), 0));
            var accepted = listeners.AcceptedFrom(to, (IPEndPoint)socket.LocalEndPoint!);
            using var timeout = new CancellationTokenSource(TestData.Patience);
            await socket.ConnectAsync(new IPEndPoint(lab.Address(to), Port), timeout.Token);
            return (socket, accepted);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A TCP listener on <see cref="Port"/> in every node's namespace, accepting all the time (a full
    /// accept queue would drop SYNs and look like a cut). Accepted sockets are closed unless a test
    /// asked for one with <see cref="AcceptedFrom"/>.
    /// </summary>
    private sealed class Listeners : IAsyncDisposable
    {
        private readonly List<Socket> _sockets = [];
        private readonly List<Task> _loops = [];
        private readonly Dictionary<(int Node, IPEndPoint Client), TaskCompletionSource<Socket>> _wanted = [];
        private readonly Lock _lock = new();

        public static Listeners Start(NetworkLab lab)
        {
            var listeners = new Listeners();
            for (var node = 0; node < lab.NodeCount; node++)
            {
                var socket = lab.CreateSocket(node);
                listeners._sockets.Add(socket);
                socket.Bind(new IPEndPoint(lab.Address(node), Port));
                socket.Listen(128);
                var n = node;
                listeners._loops.Add(Task.Run(() => listeners.AcceptLoopAsync(n, socket)));
            }

            return listeners;
        }

        /// <summary>The connection node <paramref name="node"/> accepts from <paramref name="client"/> (call before connecting).</summary>
        public Task<Socket> AcceptedFrom(int node, IPEndPoint client)
        {
            var wanted = new TaskCompletionSource<Socket>(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_lock)
            {
                _wanted[(node, client)] = wanted;
            }

            return wanted.Task.WaitAsync(TestData.Patience);
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var socket in _sockets)
            {
                socket.Dispose();
            }

            await Task.WhenAll(_loops).WaitAsync(TestData.Patience);
        }

        private async Task AcceptLoopAsync(int node, Socket listener)
        {
            while (true)
            {
                Socket accepted;
                try
                {
                    accepted = await listener.AcceptAsync();
                }
                catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
                {
                    return;
                }

                TaskCompletionSource<Socket>? wanted;
                lock (_lock)
                {
                    _wanted.Remove((node, (IPEndPoint)accepted.RemoteEndPoint!), out wanted);
                }

                if (wanted is null || !wanted.TrySetResult(accepted))
                {
                    accepted.Dispose();
                }
            }
        }
    }
}
