using Slab.Block;
using Slab.Replication;
using Xunit;

namespace Slab.Tests.Replication;

/// <summary>Client and server over in-memory pipes: every opcode, a random model, ordering, limits, fencing, failures.</summary>
public sealed class ReplicationPipeTests : IAsyncLifetime
{
    private readonly PipeHarness _harness = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _harness.DisposeAsync();

    [Fact]
    public async Task Write_then_read_round_trip_unaligned()
    {
        var client = _harness.Client();
        var data = TestData.Pattern(12345, 1);
        await client.WriteAsync(4096 + 7, data, BlockWriteFlags.None, default);
        var back = new byte[data.Length];
        await client.ReadAsync(4096 + 7, back, default);
        Assert.Equal(data, back);
        var direct = new byte[data.Length];
        await _harness.Probe.Inner.ReadAsync(4096 + 7, direct, default);
        Assert.Equal(data, direct);
    }

    [Fact]
    public async Task Fua_flush_trim_write_zeroes_and_extents_round_trip()
    {
        var client = _harness.Client();
        await client.WriteAsync(0, TestData.Pattern(256 << 10, 2), BlockWriteFlags.ForceUnitAccess, default);
        Assert.Equal(BlockWriteFlags.ForceUnitAccess, _harness.Probe.LastWriteFlags);

        var flushes = _harness.Probe.Inner.FlushCount;
        await client.FlushAsync(default);
        Assert.Equal(flushes + 1, _harness.Probe.Inner.FlushCount);

        await client.TrimAsync(0, 64 << 10, default);
        await client.WriteZeroesAsync(64 << 10, 64 << 10, WriteZeroesFlags.NoHole | WriteZeroesFlags.ForceUnitAccess, default);
        Assert.Equal(WriteZeroesFlags.NoHole | WriteZeroesFlags.ForceUnitAccess, _harness.Probe.LastZeroFlags);
        var back = new byte[128 << 10];
        await client.ReadAsync(0, back, default);
        Assert.All(back, b => Assert.Equal(0, b));

        var extents = new BlockExtent[16];
        var count = await client.GetExtentsAsync(0, 1 << 20, extents, default);
        var expected = new BlockExtent[16];
        var expectedCount = await _harness.Probe.Inner.GetExtentsAsync(0, 1 << 20, expected, default);
        Assert.Equal(expected.AsSpan(0, expectedCount).ToArray(), extents.AsSpan(0, count).ToArray());
        Assert.Equal(ExtentFlags.Hole | ExtentFlags.Zero, extents[0].Flags);

        // A destination shorter than the server's answer gets a prefix.
        Assert.Equal(1, await client.GetExtentsAsync(0, 1 << 20, new BlockExtent[1], default));
    }

    [Fact]
    public async Task Ping_reports_size_and_epoch_without_fencing()
    {
        var client = _harness.Client(epoch: 0);
        _harness.Resolver.Add(PipeHarness.Volume, _harness.Probe, epoch: 9);
        client.SetSize(1);
        var (size, epoch) = await client.PingAsync(default);
        Assert.Equal((_harness.Probe.Size, 9L), (size, epoch));
        Assert.Equal(_harness.Probe.Size, client.Size);
        Assert.Equal(0, _harness.Probe.Calls);
    }

    [Fact]
    public async Task Target_errors_map_to_the_same_block_errors()
    {
        var client = _harness.Client();
        var outOfRange = await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(_harness.Probe.Size, new byte[4096], default).AsTask());
        Assert.Equal(BlockError.OutOfRange, outOfRange.Error);
        Assert.Contains("outside the target", outOfRange.Message);
        Assert.Contains("node-b", outOfRange.Message);

        foreach (var error in new[] { BlockError.NoSpace, BlockError.ReadOnly, BlockError.NotSupported, BlockError.IOError, BlockError.InvalidArgument, BlockError.Closed, BlockError.Fenced })
        {
            _harness.Probe.Failure = new BlockTargetException(error, $"injected {error}");
            var ex = await Assert.ThrowsAsync<BlockTargetException>(() => client.WriteAsync(0, new byte[512], BlockWriteFlags.None, default).AsTask());
            Assert.Equal(error, ex.Error);
        }

        _harness.Probe.Failure = new InvalidOperationException("bug");
        var crashed = await Assert.ThrowsAsync<BlockTargetException>(() => client.FlushAsync(default).AsTask());
        Assert.Equal(BlockError.IOError, crashed.Error);
        _harness.Probe.Failure = null;
        await client.FlushAsync(default);
    }

    [Fact]
    public async Task Random_operations_match_a_byte_array_model()
    {
        const int size = 4 << 20;
        var model = new byte[size];
        var client = _harness.Client(new ReplicationOptions { MaxInFlightPerConnection = 8 });
        var random = new Random(1234);
        for (var round = 0; round < 150; round++)
        {
            // A batch of concurrent operations on disjoint 256 KiB regions, then a full check now and then.
            var tasks = new List<Task>();
            foreach (var region in Enumerable.Range(0, size / (256 << 10)).OrderBy(_ => random.Next()).Take(4))
            {
                var baseOffset = region * (256 << 10);
                var offset = baseOffset + random.Next(0, 128 << 10);
                var length = random.Next(1, 128 << 10);
                switch (random.Next(5))
                {
                    case 0 or 1:
                        var data = TestData.Pattern(length, random.Next());
                        data.CopyTo(model, offset);
                        tasks.Add(client.WriteAsync(offset, data, random.Next(4) == 0 ? BlockWriteFlags.ForceUnitAccess : BlockWriteFlags.None, default).AsTask());
                        break;
                    case 2:
                        Array.Clear(model, offset, length);
                        tasks.Add(client.TrimAsync(offset, length, default).AsTask());
                        break;
                    case 3:
                        Array.Clear(model, offset, length);
                        tasks.Add(client.WriteZeroesAsync(offset, length, random.Next(2) == 0 ? WriteZeroesFlags.NoHole : WriteZeroesFlags.None, default).AsTask());
                        break;
                    default:
                        var expected = model.AsSpan(offset, length).ToArray();
                        tasks.Add(ReadAndCompareAsync(client, offset, expected));
                        break;
                }
            }

            await Task.WhenAll(tasks);
            if (round % 25 == 24)
            {
                await client.FlushAsync(default);
                var all = new byte[size];
                await client.ReadAsync(0, all, default);
                Assert.True(model.AsSpan().SequenceEqual(all), $"round {round}: replica differs from the model");
                await CheckExtentsAgainstModelAsync(client, model);
            }
        }
    }

    private static async Task ReadAndCompareAsync(RemoteReplicaTarget client, long offset, byte[] expected)
    {
        var back = new byte[expected.Length];
        await client.ReadAsync(offset, back, default);
        Assert.Equal(expected, back);
    }

    private static async Task CheckExtentsAgainstModelAsync(RemoteReplicaTarget client, byte[] model)
    {
        long offset = 0;
        var extents = new BlockExtent[64];
        while (offset < model.Length)
        {
            var count = await client.GetExtentsAsync(offset, model.Length - offset, extents, default);
            Assert.True(count > 0);
            for (var i = 0; i < count; i++)
            {
                var length = (int)Math.Min(extents[i].Length, model.Length - offset);
                if ((extents[i].Flags & ExtentFlags.Zero) != 0)
                {
                    Assert.True(model.AsSpan((int)offset, length).IndexOfAnyExcept((byte)0) < 0, $"extent at {offset} claims zeroes");
                }

                offset += length;
            }
        }
    }

    [Fact]
    public async Task Responses_complete_out_of_order()
    {
        _harness.Probe.Gated = offset => offset == 0;
        var client = _harness.Client(new ReplicationOptions { ConnectionsPerTarget = 1 });
        await client.WriteAsync(8192, TestData.Pattern(4096, 3), BlockWriteFlags.None, default);
        var slow = client.ReadAsync(0, new byte[4096], default).AsTask();
        await _harness.Probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
        var fast = new byte[4096];
        await client.ReadAsync(8192, fast, default).AsTask().WaitAsync(TestData.Patience);
        Assert.Equal(TestData.Pattern(4096, 3), fast);
        Assert.False(slow.IsCompleted);
        _harness.Probe.OpenGate();
        await slow.WaitAsync(TestData.Patience);
    }

    [Fact]
    public async Task In_flight_requests_are_bounded_per_connection()
    {
        _harness.Probe.Gated = _ => true;
        var client = _harness.Client(new ReplicationOptions { ConnectionsPerTarget = 1, MaxInFlightPerConnection = 4 });
        await client.PingAsync(default);
        var writes = Enumerable.Range(0, 10).Select(i => client.WriteAsync(i * 4096, TestData.Pattern(4096, i), BlockWriteFlags.None, default).AsTask()).ToList();
        await _harness.Probe.WaitForRunningAsync(4).WaitAsync(TestData.Patience);
        Assert.Equal(4, _harness.Probe.Running);
        Assert.All(writes, w => Assert.False(w.IsCompleted));
        _harness.Probe.OpenGate();
        await Task.WhenAll(writes).WaitAsync(TestData.Patience);
        Assert.Equal(4, _harness.Probe.MaxRunning);
        for (var i = 0; i < 10; i++)
        {
            var back = new byte[4096];
            await client.ReadAsync(i * 4096, back, default);
            Assert.Equal(TestData.Pattern(4096, i), back);
        }
    }

    [Fact]
    public async Task Callers_waiting_for_a_slot_fail_when_the_connection_closes()
    {
        _harness.Probe.Gated = _ => true;
        var client = _harness.Client(new ReplicationOptions { ConnectionsPerTarget = 1, MaxInFlightPerConnection = 4, RequestTimeout = TimeSpan.FromSeconds(5) });
        await client.PingAsync(default);
        var writes = Enumerable.Range(0, 10).Select(i => client.WriteAsync(i * 4096, TestData.Pattern(4096, i), BlockWriteFlags.None, default).AsTask()).ToList();
        await _harness.Probe.WaitForRunningAsync(4).WaitAsync(TestData.Patience);
        _harness.Time.Advance(TimeSpan.FromSeconds(5));
        foreach (var write in writes)
        {
            var ex = await Assert.ThrowsAsync<BlockTargetException>(() => write.WaitAsync(TestData.Patience));
            Assert.Equal(BlockError.IOError, ex.Error);
            Assert.Contains("timed out after 00:00:05", ex.Message);
        }

        _harness.Probe.OpenGate();
    }

    [Fact]
    public async Task Lower_epoch_is_fenced_without_touching_the_target()
    {
        _harness.Resolver.Add(PipeHarness.Volume, _harness.Probe, epoch: 5);
        var client = _harness.Client(epoch: 4);
        var ex = await Assert.ThrowsAsync<BlockTargetException>(() => client.WriteAsync(0, TestData.Pattern(4096, 1), BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.Fenced, ex.Error);
        Assert.Contains("fenced epoch 4", ex.Message);
        foreach (var attempt in new Func<Task>[]
        {
            () => client.ReadAsync(0, new byte[4096], default).AsTask(),
            () => client.FlushAsync(default).AsTask(),
            () => client.TrimAsync(0, 4096, default).AsTask(),
            () => client.WriteZeroesAsync(0, 4096, WriteZeroesFlags.None, default).AsTask(),
            () => client.GetExtentsAsync(0, 4096, new BlockExtent[4], default).AsTask(),
        })
        {
            Assert.Equal(BlockError.Fenced, (await Assert.ThrowsAsync<BlockTargetException>(attempt)).Error);
        }

        Assert.Equal(0, _harness.Probe.Calls);
        Assert.Equal(0, _harness.Probe.Inner.AllocatedBytes);
        Assert.Empty(_harness.Resolver.AdvanceRequests);

        // The controller learns the new epoch and carries on.
        client.Epoch = 5;
        await client.WriteAsync(0, TestData.Pattern(4096, 1), BlockWriteFlags.None, default);
    }

    [Fact]
    public async Task Higher_epoch_goes_to_the_resolver_which_decides()
    {
        var client = _harness.Client(epoch: 7);
        _harness.Resolver.AcceptHigherEpochs = false;
        var rejected = await Assert.ThrowsAsync<BlockTargetException>(() => client.WriteAsync(0, new byte[4096], BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.IOError, rejected.Error);
        Assert.Contains("has not accepted epoch 7", rejected.Message);
        Assert.Equal(0, _harness.Probe.Calls);
        Assert.Equal((PipeHarness.Volume, 7L), Assert.Single(_harness.Resolver.AdvanceRequests));

        _harness.Resolver.AcceptHigherEpochs = true;
        await client.WriteAsync(0, TestData.Pattern(4096, 5), BlockWriteFlags.None, default);
        Assert.Equal(7, _harness.Resolver.EpochOf(PipeHarness.Volume));
        Assert.Equal(1, _harness.Probe.Calls);

        // The old controller (epoch 1) is now fenced.
        var old = _harness.Client(epoch: 1);
        Assert.Equal(BlockError.Fenced, (await Assert.ThrowsAsync<BlockTargetException>(() => old.WriteAsync(0, new byte[4096], BlockWriteFlags.None, default).AsTask())).Error);
    }

    [Fact]
    public async Task Unknown_volume_is_reported_as_closed_naming_the_node()
    {
        var client = _harness.Client(volume: Guid.NewGuid());
        var ex = await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask());
        Assert.Equal(BlockError.Closed, ex.Error);
        Assert.Contains("holds no replica", ex.Message);
        Assert.Contains("node-b", ex.Message);
        Assert.Equal(0, _harness.Probe.Calls);
    }

    [Theory]
    [InlineData(1, 1, 1, 3, (ushort)1)]
    [InlineData(1, 2, 2, 3, (ushort)2)]
    [InlineData(1, 4, 1, 2, (ushort)2)]
    public async Task Versions_negotiate_to_the_highest_common(int serverMin, int serverMax, int clientMin, int clientMax, ushort expected)
    {
        await using var harness = new PipeHarness(serverOptions: new ReplicationOptions { MinProtocolVersion = (ushort)serverMin, MaxProtocolVersion = (ushort)serverMax });
        var options = new ReplicationOptions { MinProtocolVersion = (ushort)clientMin, MaxProtocolVersion = (ushort)clientMax };
        await using var connection = await ReplicaClientConnection.ConnectAsync(harness.Network, options, PipeHarness.ClientNode, harness.Time, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, default);
        Assert.Equal(expected, connection.Version);
        Assert.Equal(PipeHarness.ServerNode, connection.PeerNodeId);
    }

    [Fact]
    public async Task Versions_without_overlap_are_refused_with_a_clear_reason()
    {
        var client = _harness.Client(new ReplicationOptions { MinProtocolVersion = 2, MaxProtocolVersion = 3 });
        var ex = await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask());
        Assert.Equal(BlockError.IOError, ex.Error);
        Assert.Contains("node-b refused the connection: no common protocol version: client speaks 2..3, server speaks 1..1", ex.Message);
        Assert.Equal(0, _harness.Probe.Calls);
    }

    [Fact]
    public async Task Request_timeout_fails_with_io_error_naming_the_node_then_reconnects()
    {
        _harness.Probe.Gated = offset => offset == 0;
        var client = _harness.Client(new ReplicationOptions { ConnectionsPerTarget = 1, RequestTimeout = TimeSpan.FromSeconds(5) });
        await client.PingAsync(default);
        var stuck = client.WriteAsync(0, new byte[4096], BlockWriteFlags.None, default).AsTask();
        await _harness.Probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
        _harness.Time.Advance(TimeSpan.FromSeconds(4));
        Assert.False(stuck.IsCompleted);
        _harness.Time.Advance(TimeSpan.FromSeconds(1));
        var ex = await Assert.ThrowsAsync<BlockTargetException>(() => stuck.WaitAsync(TestData.Patience));
        Assert.Equal(BlockError.IOError, ex.Error);
        Assert.Contains("replica node node-b", ex.Message);
        Assert.Contains("timed out after 00:00:05", ex.Message);
        Assert.Equal(0, client.OpenConnections);

        // The node is fine otherwise: the next request opens a new connection.
        var connects = _harness.Network.Connects;
        await client.WriteAsync(4096, TestData.Pattern(4096, 8), BlockWriteFlags.None, default);
        Assert.Equal(connects + 1, _harness.Network.Connects);
    }

    [Fact]
    public async Task Server_restart_surfaces_io_error_then_reconnects_after_backoff()
    {
        var options = new ReplicationOptions { ConnectionsPerTarget = 1, ReconnectBackoffMin = TimeSpan.FromSeconds(1), ReconnectBackoffMax = TimeSpan.FromSeconds(4) };
        var client = _harness.Client(options);
        var before = TestData.Pattern(64 << 10, 11);
        await client.WriteAsync(0, before, BlockWriteFlags.ForceUnitAccess, default);

        // Killed mid-stream: a request in flight fails with IOError.
        _harness.Probe.Gated = offset => offset == 1 << 20;
        var inFlight = client.WriteAsync(1 << 20, new byte[4096], BlockWriteFlags.None, default).AsTask();
        await _harness.Probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
        _harness.Network.Down = true;
        await _harness.Network.KillAsync();
        Assert.Equal(BlockError.IOError, (await Assert.ThrowsAsync<BlockTargetException>(() => inFlight.WaitAsync(TestData.Patience))).Error);

        // While down: connect fails, then the backoff answers at once without connecting.
        var refused = await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask());
        Assert.Equal(BlockError.IOError, refused.Error);
        Assert.Contains("connect failed: connection refused", refused.Message);
        var backingOff = await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask());
        Assert.Contains("unreachable", backingOff.Message);

        _harness.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(BlockError.IOError, (await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask())).Error);

        // Back up: still backing off (2 s after the second failure), then it reconnects.
        _harness.Network.Down = false;
        _harness.Probe.Gated = null;
        _harness.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Contains("unreachable", (await Assert.ThrowsAsync<BlockTargetException>(() => client.ReadAsync(0, new byte[4096], default).AsTask())).Message);
        _harness.Time.Advance(TimeSpan.FromSeconds(1));
        var back = new byte[before.Length];
        await client.ReadAsync(0, back, default);
        Assert.Equal(before, back);
        Assert.Equal(1, client.OpenConnections);
    }

    [Fact]
    public async Task Caller_cancellation_releases_the_caller_and_the_connection_keeps_working()
    {
        _harness.Probe.Gated = offset => offset == 0;
        var client = _harness.Client(new ReplicationOptions { ConnectionsPerTarget = 1 });
        using var cts = new CancellationTokenSource();
        var read = client.ReadAsync(0, new byte[4096], cts.Token).AsTask();
        await _harness.Probe.WaitForRunningAsync(1).WaitAsync(TestData.Patience);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => read.WaitAsync(TestData.Patience));

        // The late response is discarded; other requests flow on the same connection.
        _harness.Probe.OpenGate();
        for (var i = 0; i < 100; i++)
        {
            await client.WriteAsync(4096 * i, TestData.Pattern(4096, i), BlockWriteFlags.None, default);
        }

        Assert.Equal(1, _harness.Network.Connects);
    }

    [Fact]
    public async Task Requests_spread_over_the_configured_connections()
    {
        var client = _harness.Client(new ReplicationOptions { ConnectionsPerTarget = 2 });
        for (var i = 0; i < 20; i++)
        {
            await client.WriteAsync(4096 * i, TestData.Pattern(4096, i), BlockWriteFlags.None, default);
        }

        Assert.Equal(2, client.OpenConnections);
    }

    [Fact]
    public async Task Oversized_requests_are_refused_locally()
    {
        var client = _harness.Client(new ReplicationOptions { MaxPayload = 64 << 10 });
        var ex = await Assert.ThrowsAsync<BlockTargetException>(() => client.WriteAsync(0, new byte[(64 << 10) + 1], BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.InvalidArgument, ex.Error);
        Assert.Equal(0, _harness.Probe.Calls);
    }

    [Fact]
    public async Task Disposed_target_answers_closed()
    {
        var client = _harness.Client();
        await client.FlushAsync(default);
        await client.DisposeAsync();
        Assert.Equal(BlockError.Closed, (await Assert.ThrowsAsync<BlockTargetException>(() => client.FlushAsync(default).AsTask())).Error);
    }
}
