using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Replication;
using Xunit;

namespace Slab.Tests.Replication;

/// <summary>Client and an in-process <see cref="ReplicaSocketListener"/> over real TCP on 127.0.0.1.</summary>
public sealed class ReplicationTcpTests : IAsyncLifetime
{
    private readonly ProbeTarget _probe = new(64 << 20);
    private readonly TestResolver _resolver;
    private readonly ManualTimeProvider _time = new();
    private readonly List<RemoteReplicaTarget> _clients = [];
    private ReplicaSocketListener? _listener;
    private int _port;

    public ReplicationTcpTests()
    {
        _resolver = new TestResolver().Add(PipeHarness.Volume, _probe);
    }

    public Task InitializeAsync()
    {
        StartServer(0);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        _probe.OpenGate();
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }

        await StopServerAsync();
    }

    private void StartServer(int port, ReplicationOptions? options = null)
    {
        var server = new ReplicaServer(_resolver, options ?? new ReplicationOptions(), PipeHarness.ServerNode, TimeProvider.System, NullLogger.Instance);
        var listener = new ReplicaSocketListener(new IPEndPoint(IPAddress.Loopback, port), server, NullLoggerFactory.Instance);
        _listener = listener;
        listener.Start();
        _port = listener.LocalEndPoint.Port;
    }

    /// <summary>
    /// Stops the listener: connections are cancelled (requests in flight see it) and closed.
    /// <paramref name="kill"/> tears them down first, as a crashed node would (no answers).
    /// </summary>
    private async Task StopServerAsync(bool kill = false)
    {
        if (_listener is not { } listener)
        {
            return;
        }

        _listener = null;
        if (kill)
        {
            listener.AbortConnections();
        }

        await listener.DisposeAsync().AsTask().WaitAsync(TestData.Patience);
    }

    private RemoteReplicaTarget Client(ReplicationOptions? options = null)
    {
        var connector = new TcpReplicaConnector(new IPEndPoint(IPAddress.Loopback, _port), "node-b");
        var client = new RemoteReplicaTarget(PipeHarness.Volume, _probe.Size, 1, connector, options ?? new ReplicationOptions(), PipeHarness.ClientNode, _time, NullLogger.Instance);
        _clients.Add(client);
        return client;
    }

    [Fact]
    public async Task Every_opcode_round_trips_over_tcp()
    {
        var client = Client();
        var data = TestData.Pattern(1 << 20, 1);
        await client.WriteAsync(4096, data, BlockWriteFlags.ForceUnitAccess, default);
        var back = new byte[data.Length];
        await client.ReadAsync(4096, back, default);
        Assert.Equal(data, back);
        await client.FlushAsync(default);
        await client.TrimAsync(4096, 64 << 10, default);
        await client.WriteZeroesAsync(128 << 10, 64 << 10, WriteZeroesFlags.NoHole, default);
        var extents = new BlockExtent[32];
        Assert.True(await client.GetExtentsAsync(0, 4 << 20, extents, default) > 0);
        Assert.Equal((_probe.Size, 1L), await client.PingAsync(default));

        // A 32 MiB payload, the protocol maximum.
        var big = TestData.Pattern(32 << 20, 2);
        await client.WriteAsync(16 << 20, big, BlockWriteFlags.None, default);
        var bigBack = new byte[big.Length];
        await client.ReadAsync(16 << 20, bigBack, default);
        Assert.True(big.AsSpan().SequenceEqual(bigBack));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4)]
    public async Task Thirty_two_writers_of_random_4k_blocks_never_stall(int window)
    {
        // The shape of fio randwrite 4k QD32 on a remotely attached volume: many small writes in flight on one target
        // (with a small window, most of them wait for a free slot).
        var client = Client(window == 0 ? null : new ReplicationOptions { MaxInFlightPerConnection = window });
        var blocks = (int)(_probe.Size / 4096);
        var completed = 0;
        await Task.WhenAll(Enumerable.Range(0, 32).Select(worker => Task.Run(async () =>
        {
            var random = new Random(worker);
            var data = TestData.Pattern(4096, worker);
            for (var i = 0; i < 1500; i++)
            {
                await client.WriteAsync((long)random.Next(blocks) * 4096, data, BlockWriteFlags.None, default).AsTask().WaitAsync(TestData.Patience);
                Interlocked.Increment(ref completed);
            }
        })));
        Assert.Equal(32 * 1500, completed);
    }

    [Fact]
    public async Task Four_concurrent_clients_keep_their_data()
    {
        var clients = Enumerable.Range(0, 4).Select(_ => Client()).ToArray();
        await Task.WhenAll(clients.Select((client, n) => Task.Run(async () =>
        {
            var region = n * (8L << 20);
            var random = new Random(n);
            var model = new byte[1 << 20];
            var pending = new List<Task>();
            for (var i = 0; i < 64; i++)
            {
                var offset = i * 16384;
                var chunk = TestData.Pattern(16384, random.Next());
                chunk.CopyTo(model, offset);
                pending.Add(client.WriteAsync(region + offset, chunk, BlockWriteFlags.None, default).AsTask());
            }

            await Task.WhenAll(pending);
            await client.FlushAsync(default);
            var back = new byte[model.Length];
            await client.ReadAsync(region, back, default);
            Assert.True(model.AsSpan().SequenceEqual(back), $"client {n} read back other data");
        })));
    }

    [Fact]
    public async Task Server_killed_mid_stream_surfaces_io_error_then_reconnects_when_back()
    {
        var client = Client(new ReplicationOptions { ConnectionsPerTarget = 1, ReconnectBackoffMin = TimeSpan.FromSeconds(1) });
        var before = TestData.Pattern(64 << 10, 3);
        await client.WriteAsync(0, before, BlockWriteFlags.ForceUnitAccess, default);

        _probe.Gated = offset => offset == 1 << 20;
        var inFlight = client.WriteAsync(1 << 20, new byte[4096], BlockWriteFlags.None, default).AsTask();
        await _probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
        var port = _port;
        await StopServerAsync(kill: true);
        var lost = await Assert.ThrowsAsync<BlockTargetException>(() => inFlight.WaitAsync(TestData.Patience));
        Assert.Equal(BlockError.IOError, lost.Error);
        Assert.Contains("node-b", lost.Message);

        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask());
        Assert.Equal(BlockError.IOError, refused.Error);
        Assert.Contains("connect failed", refused.Message);

        _probe.Gated = null;
        StartServer(port);
        _time.Advance(TimeSpan.FromSeconds(1));
        var back = new byte[before.Length];
        await client.ReadAsync(0, back, default);
        Assert.Equal(before, back);
    }

    [Theory]
    [InlineData("127.0.0.7", "127.0.0.7")]
    [InlineData("0.0.0.0", "127.0.0.1")]
    [InlineData("::1", "127.0.0.1")]
    public async Task The_connector_connects_from_the_given_local_address_when_it_can(string local, string seenByPeer)
    {
        using var peer = new TcpListener(IPAddress.Loopback, 0);
        peer.Start();
        var connector = new TcpReplicaConnector(peer.LocalEndpoint, "peer", IPAddress.Parse(local));
        var accepting = peer.AcceptSocketAsync();
        await using var transport = await connector.ConnectAsync(CancellationToken.None);
        using var accepted = await accepting.WaitAsync(TestData.Patience);
        Assert.Equal(IPAddress.Parse(seenByPeer), ((IPEndPoint)accepted.RemoteEndPoint!).Address);
    }

    [Fact]
    public async Task The_listener_reports_the_ephemeral_port_it_bound()
    {
        var bound = _listener!.LocalEndPoint;
        Assert.Equal(IPAddress.Loopback, bound.Address);
        Assert.NotEqual(0, bound.Port);
        Assert.Equal((_probe.Size, 1L), await Client().PingAsync(default));
    }

    [Fact]
    public async Task Start_is_required_once_and_a_port_in_use_is_reported()
    {
        var server = new ReplicaServer(_resolver, new ReplicationOptions(), PipeHarness.ServerNode, TimeProvider.System, NullLogger.Instance);
        await using var unstarted = new ReplicaSocketListener(new IPEndPoint(IPAddress.Loopback, 0), server, NullLoggerFactory.Instance);
        Assert.Throws<InvalidOperationException>(() => unstarted.LocalEndPoint);

        await using var clash = new ReplicaSocketListener(new IPEndPoint(IPAddress.Loopback, _port), server, NullLoggerFactory.Instance);
        var inUse = Assert.Throws<SocketException>(clash.Start);
        Assert.Equal(SocketError.AddressAlreadyInUse, inUse.SocketErrorCode);

        Assert.Throws<InvalidOperationException>(_listener!.Start);
        var disposed = new ReplicaSocketListener(new IPEndPoint(IPAddress.Loopback, 0), server, NullLoggerFactory.Instance);
        await disposed.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(disposed.Start);
    }

    [Fact]
    public async Task Connections_beyond_the_limit_are_refused_and_served_ones_keep_working()
    {
        await StopServerAsync();
        StartServer(0, new ReplicationOptions { MaxServerConnections = 1 });
        var served = Client(new ReplicationOptions { ConnectionsPerTarget = 1 });
        await served.WriteAsync(0, TestData.Pattern(4096, 4), BlockWriteFlags.None, default);
        Assert.Equal(1, _listener!.ConnectionCount);

        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => Client().ReadAsync(0, new byte[4096], default).AsTask());
        Assert.Equal(BlockError.IOError, refused.Error);
        Assert.Contains("node-b", refused.Message);

        var back = new byte[4096];
        await served.ReadAsync(0, back, default);
        Assert.Equal(TestData.Pattern(4096, 4), back);
        Assert.Equal(1, _listener.ConnectionCount);
    }

    [Fact]
    public async Task Disposing_the_listener_cancels_requests_in_flight_and_waits_for_them()
    {
        var client = Client(new ReplicationOptions { ConnectionsPerTarget = 1 });
        _probe.Gated = offset => offset == 0;
        var inFlight = client.WriteAsync(0, new byte[4096], BlockWriteFlags.None, default).AsTask();
        await _probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
        var listener = _listener!;

        await StopServerAsync();
        Assert.Equal(0, _probe.Running);
        Assert.Equal(0, listener.ConnectionCount);
        // A stopping server still answers what it cancelled: Closed.
        var closed = await Assert.ThrowsAsync<BlockTargetException>(() => inFlight.WaitAsync(TestData.Patience));
        Assert.Equal(BlockError.Closed, closed.Error);
        await listener.DisposeAsync(); // idempotent
    }

    [Fact]
    public async Task Disposing_the_listener_closes_idle_connections_and_refuses_new_ones()
    {
        var client = Client(new ReplicationOptions { ConnectionsPerTarget = 2 });
        await Task.WhenAll(client.PingAsync(default), client.PingAsync(default));
        using var raw = await RawTcpPeer.ConnectAsync(_port);
        Assert.Equal(ReplicaProtocol.ServerHelloSize, (await raw.HelloAsync()).Length);
        var listener = _listener!;
        Assert.Equal(3, listener.ConnectionCount);

        await StopServerAsync();
        Assert.Equal(0, listener.ConnectionCount);
        Assert.Equal(0, await raw.ReadToEndAsync().WaitAsync(TestData.Patience));
        var refused = await Assert.ThrowsAsync<SocketException>(() => RawTcpPeer.ConnectAsync(_port));
        Assert.Equal(SocketError.ConnectionRefused, refused.SocketErrorCode);
    }

    [Fact]
    public async Task A_malformed_hello_over_tcp_closes_only_that_connection()
    {
        var good = Client(new ReplicationOptions { ConnectionsPerTarget = 1 });
        await good.PingAsync(default);
        var listener = _listener!;

        using (var raw = await RawTcpPeer.ConnectAsync(_port))
        {
            var hello = RawFrames.Hello();
            hello[0] ^= 0xFF;
            await raw.SendAsync(hello);
            Assert.Equal(0, await raw.ReadToEndAsync().WaitAsync(TestData.Patience));
        }

        // Garbage of any length, then the peer hangs up.
        using (var raw = await RawTcpPeer.ConnectAsync(_port))
        {
            await raw.SendAsync(TestData.Pattern(5000, 11));
            Assert.Equal(0, await raw.ReadToEndAsync().WaitAsync(TestData.Patience));
        }

        // No common version: refused with a reason, then closed.
        using (var raw = await RawTcpPeer.ConnectAsync(_port))
        {
            await raw.SendAsync(RawFrames.Hello(minVersion: 7, maxVersion: 9));
            var refusal = await raw.ReadExactAsync(ReplicaProtocol.ServerHelloSize);
            var parsed = ServerHello.TryParse(refusal, out var error);
            Assert.True(parsed.HasValue, error);
            Assert.False(parsed.Value.Accepted);
            var reason = ReplicaProtocol.Utf8.GetString(await raw.ReadExactAsync(parsed.Value.ReasonLength));
            Assert.Contains("no common protocol version", reason);
            Assert.Equal(0, await raw.ReadToEndAsync().WaitAsync(TestData.Patience));
        }

        // The other connection kept working, on the same socket; no broken one is left behind.
        Assert.Equal(0, _probe.Calls);
        Assert.Equal((_probe.Size, 1L), await good.PingAsync(default));
        Assert.Equal(1, good.OpenConnections);
        await good.DisposeAsync();
        await listener.WhenCurrentConnectionsEndAsync().WaitAsync(TestData.Patience);
        Assert.Equal(0, listener.ConnectionCount);
    }

    [Fact]
    public async Task A_peer_that_disconnects_mid_request_leaves_the_target_untouched()
    {
        var initial = TestData.Pattern(8192, 12);
        await _probe.Inner.WriteAsync(0, initial, BlockWriteFlags.None, default);
        var listener = _listener!;

        // Header and half the payload, then the peer is gone.
        using (var raw = await RawTcpPeer.ConnectAsync(_port))
        {
            await raw.HelloAsync();
            var frame = RawFrames.Request(ReplicaOpcode.Write, 0, TestData.Pattern(8192, 13));
            await raw.SendAsync(frame.AsMemory(0, ReplicaProtocol.RequestHeaderSize + 4096));
            raw.Reset();
        }

        await listener.WhenCurrentConnectionsEndAsync().WaitAsync(TestData.Patience);
        Assert.Equal(0, listener.ConnectionCount);
        Assert.Equal(0, _probe.Calls);
        var back = new byte[initial.Length];
        await _probe.Inner.ReadAsync(0, back, default);
        Assert.Equal(initial, back);
    }

    [Fact]
    public async Task A_peer_that_disconnects_while_its_request_runs_ends_its_connection_when_the_request_ends()
    {
        var listener = _listener!;
        _probe.Gated = offset => offset == 1 << 20;
        using (var raw = await RawTcpPeer.ConnectAsync(_port))
        {
            await raw.HelloAsync();
            await raw.SendAsync(RawFrames.Request(ReplicaOpcode.Write, 1 << 20, TestData.Pattern(4096, 14), requestId: 5));
            await _probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
            raw.Reset();
        }

        // The server finishes the request it started (its answer has nowhere to go), then closes.
        var ended = listener.WhenCurrentConnectionsEndAsync();
        _probe.OpenGate();
        await ended.WaitAsync(TestData.Patience);
        Assert.Equal(0, listener.ConnectionCount);
        Assert.Equal(0, _probe.Running);
        var back = new byte[4096];
        await Client().ReadAsync(1 << 20, back, default);
        Assert.Equal(TestData.Pattern(4096, 14), back);
    }

    [Fact]
    public async Task Pipelined_raw_requests_over_tcp_are_answered_by_request_id()
    {
        var initial = TestData.Pattern(64 << 10, 15);
        await _probe.Inner.WriteAsync(0, initial, BlockWriteFlags.None, default);
        using var raw = await RawTcpPeer.ConnectAsync(_port);
        await raw.HelloAsync();

        // Reads of distinct blocks, writes elsewhere, a flush and a ping: sent back to back.
        var frames = new List<byte[]>();
        for (var i = 0; i < 16; i++)
        {
            frames.Add(RawFrames.Request(ReplicaOpcode.Read, i * 4096, [], length: 4096, requestId: (ulong)(100 + i)));
            frames.Add(RawFrames.Request(ReplicaOpcode.Write, (1 << 20) + (i * 4096), TestData.Pattern(4096, 200 + i), requestId: (ulong)(200 + i)));
        }

        frames.Add(RawFrames.Request(ReplicaOpcode.Flush, 0, [], requestId: 300));
        await raw.SendAsync(frames.SelectMany(f => f).ToArray());

        var responses = await RawFrames.ReadResponsesAsync(raw.ReadExactAsync, frames.Count).WaitAsync(TestData.Patience);
        for (var i = 0; i < 16; i++)
        {
            var read = responses[(ulong)(100 + i)];
            Assert.Equal(ReplicaStatus.Ok, read.Status);
            Assert.Equal(initial.AsSpan(i * 4096, 4096).ToArray(), read.Data);
            Assert.Equal(ReplicaStatus.Ok, responses[(ulong)(200 + i)].Status);
            Assert.Empty(responses[(ulong)(200 + i)].Data);
        }

        Assert.Equal(ReplicaStatus.Ok, responses[300].Status);
        for (var i = 0; i < 16; i++)
        {
            var back = new byte[4096];
            await _probe.Inner.ReadAsync((1 << 20) + (i * 4096), back, default);
            Assert.Equal(TestData.Pattern(4096, 200 + i), back);
        }
    }

    [Fact]
    public async Task The_di_helper_registers_the_server_a_listener_serves()
    {
        await StopServerAsync();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<IReplicaResolver>(_resolver);
        services.AddReplicationServer(PipeHarness.ServerNode, new ReplicationOptions { MaxServerConnections = 8 });
        await using var provider = services.BuildServiceProvider();
        var server = provider.GetRequiredService<ReplicaServer>();
        Assert.Equal(PipeHarness.ServerNode, server.NodeId);
        Assert.Equal(8, provider.GetRequiredService<ReplicationOptions>().MaxServerConnections);

        _listener = new ReplicaSocketListener(new IPEndPoint(IPAddress.Loopback, 0), server, provider.GetRequiredService<ILoggerFactory>());
        _listener.Start();
        _port = _listener.LocalEndPoint.Port;
        Assert.Equal((_probe.Size, 1L), await Client().PingAsync(default));
    }

    /// <summary>A peer speaking raw bytes over a real TCP connection; disposing it closes the socket.</summary>
    private sealed class RawTcpPeer : IDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;

        private RawTcpPeer(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
        }

        public static async Task<RawTcpPeer> ConnectAsync(int port)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                using var timeout = new CancellationTokenSource(TestData.Patience);
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), timeout.Token);
                return new RawTcpPeer(socket);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }

        public async Task<byte[]> HelloAsync()
        {
            await SendAsync(RawFrames.Hello());
            var reply = await ReadExactAsync(ReplicaProtocol.ServerHelloSize);
            Assert.True(ServerHello.TryParse(reply, out var error) is { Accepted: true }, error ?? "hello refused");
            return reply;
        }

        public async Task SendAsync(ReadOnlyMemory<byte> bytes) => await _stream.WriteAsync(bytes);

        public async Task<byte[]> ReadExactAsync(int count)
        {
            var bytes = new byte[count];
            using var timeout = new CancellationTokenSource(TestData.Patience);
            await _stream.ReadExactlyAsync(bytes, timeout.Token);
            return bytes;
        }

        /// <summary>Reads until the server closes the connection (end-of-stream or reset); returns the bytes that came.</summary>
        public async Task<long> ReadToEndAsync()
        {
            var buffer = new byte[4096];
            long total = 0;
            try
            {
                int n;
                while ((n = await _stream.ReadAsync(buffer)) > 0)
                {
                    total += n;
                }
            }
            catch (IOException ex) when (ex.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
            {
                // The server closed with our unread bytes in its buffer: a reset, also a close.
            }

            return total;
        }

        /// <summary>Closes with a reset (linger 0), as a crashed peer's kernel would.</summary>
        public void Reset()
        {
            _socket.LingerState = new LingerOption(true, 0);
            _socket.Close();
        }

        public void Dispose() => _stream.Dispose();
    }
}
