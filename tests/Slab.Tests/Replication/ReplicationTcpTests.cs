using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Replication;
using Xunit;

namespace Slab.Tests.Replication;

/// <summary>Client and an in-process Kestrel server over real TCP on 127.0.0.1.</summary>
public sealed class ReplicationTcpTests : IAsyncLifetime
{
    private readonly ProbeTarget _probe = new(64 << 20);
    private readonly TestResolver _resolver;
    private readonly ManualTimeProvider _time = new();
    private readonly List<RemoteReplicaTarget> _clients = [];
    private WebApplication? _app;
    private int _port;

    public ReplicationTcpTests()
    {
        _resolver = new TestResolver().Add(PipeHarness.Volume, _probe);
    }

    public async Task InitializeAsync() => await StartServerAsync(0);

    public async Task DisposeAsync()
    {
        _probe.OpenGate();
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }

        await StopServerAsync(kill: false);
    }

    private async Task StartServerAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IReplicaResolver>(_resolver);
        builder.Services.AddReplicationServer(PipeHarness.ServerNode);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenReplication(IPAddress.Loopback, port));
        var app = builder.Build();
        using var timeout = new CancellationTokenSource(TestData.Patience);
        await app.StartAsync(timeout.Token);
        _app = app;
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        _port = new Uri(address).Port;
    }

    /// <summary>Stops Kestrel; <paramref name="kill"/> aborts connections at once instead of letting them finish.</summary>
    private async Task StopServerAsync(bool kill)
    {
        if (_app is not { } app)
        {
            return;
        }

        _app = null;
        await app.StopAsync(kill ? new CancellationToken(canceled: true) : CancellationToken.None);
        await app.DisposeAsync();
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
        await StartServerAsync(port);
        _time.Advance(TimeSpan.FromSeconds(1));
        var back = new byte[before.Length];
        await client.ReadAsync(0, back, default);
        Assert.Equal(before, back);
    }
}
