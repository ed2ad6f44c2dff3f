using System.Buffers.Binary;
using Slab.Block;
using Slab.Frontend.Nbd;
using Xunit;

namespace Slab.Tests.Nbd;

/// <summary>Every command, flag and error of the transmission phase, over in-memory pipes.</summary>
public sealed class NbdTransmissionTests
{
    private const long Size = 16 * 1024 * 1024;
    private const ushort Read = 0, Write = 1, Disc = 2, Flush = 3, Trim = 4, Cache = 5, WriteZeroes = 6, BlockStatus = 7;
    private const ushort Fua = 1, NoHole = 2, Df = 4, ReqOne = 8;
    private const uint EPERM = 1, EIO = 5, EINVAL = 22, ENOSPC = 28;
    private const ushort ChunkNone = 0, ChunkOffsetData = 1, ChunkBlockStatus = 5, ChunkError = 0x8001;

    private readonly TestTarget _disk = new(Size);
    private readonly TestTarget _readOnly = new(Size, readOnly: true);
    private readonly TestExportCatalog _catalog;

    public NbdTransmissionTests()
    {
        _catalog = new TestExportCatalog().Add("disk", _disk).Add("ro", _readOnly);
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    [Fact]
    public async Task Transmission_flags_follow_target_features()
    {
        await using (var client = new NbdPipeClient(_catalog))
        {
            Assert.Equal(1 | 4 | 8 | 32 | 64 | 256, (await client.ConnectAsync("disk")).Flags);
        }

        await using (var client = new NbdPipeClient(_catalog))
        {
            Assert.Equal(1 | 4 | 8 | 32 | 64 | 128 | 256, (await client.ConnectAsync("disk", structured: true)).Flags);
        }

        await using (var client = new NbdPipeClient(_catalog))
        {
            Assert.Equal(1 | 2 | 4 | 8 | 256, (await client.ConnectAsync("ro")).Flags);
        }

        _disk.FeaturesOverride = BlockTargetFeatures.Flush;
        await using (var client = new NbdPipeClient(_catalog))
        {
            Assert.Equal(1 | 4, (await client.ConnectAsync("disk")).Flags);
        }
    }

    [Fact]
    public async Task Write_fua_then_read_back_with_simple_replies()
    {
        await using var client = new NbdPipeClient(_catalog);
        var (size, _) = await client.ConnectAsync("disk");
        Assert.Equal((ulong)Size, size);
        var data = Pattern(8192 + 100, 1);
        await client.SendRequestAsync(Write, 1, 4096 + 3, (uint)data.Length, Fua, data);
        var written = await client.ReceiveReplyAsync();
        Assert.Equal((false, 1ul, 0u), (written.Structured, written.Cookie, written.Error));

        await client.SendRequestAsync(Read, 2, 4096 + 3, (uint)data.Length);
        var read = await client.ReceiveReplyAsync(data.Length);
        Assert.Equal((2ul, 0u), (read.Cookie, read.Error));
        Assert.Equal(data, read.Payload);
    }

    [Fact]
    public async Task Structured_read_is_one_offset_data_chunk_with_done()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk", structured: true);
        var data = Pattern(4096, 2);
        await client.SendRequestAsync(Write, 1, 65536, 4096, 0, data);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);

        await client.SendRequestAsync(Read, 2, 65536, 4096, Df);
        var chunk = await client.ReceiveReplyAsync();
        Assert.True(chunk.Structured && chunk.Done);
        Assert.Equal((ChunkOffsetData, 2ul), (chunk.Type, chunk.Cookie));
        Assert.Equal(65536ul, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
        Assert.Equal(data, chunk.Payload[8..]);

        await client.SendRequestAsync(Read, 3, 0, 0);
        var empty = await client.ReceiveReplyAsync();
        Assert.True(empty.Done);
        Assert.Equal((ChunkNone, 3ul), (empty.Type, empty.Cookie));
    }

    [Fact]
    public async Task Flush_reaches_the_target()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(Flush, 9, 0, 0);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);
        Assert.Equal(1, _disk.Inner.FlushCount);

        // FUA on trim is honoured with a flush after the trim.
        await client.SendRequestAsync(Trim, 10, 0, 65536, Fua);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);
        Assert.Equal(2, _disk.Inner.FlushCount);
    }

    [Fact]
    public async Task Trim_write_zeroes_and_block_status()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk", structured: true, blockStatus: true);
        await client.SendRequestAsync(Write, 1, 65536, 131072, 0, Pattern(131072, 3));
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);

        Assert.Equal([(65536u, 3u), (131072u, 0u), (65536u, 3u)], await BlockStatusAsync(client, 0, 262144));
        Assert.Equal([(65536u, 3u)], await BlockStatusAsync(client, 0, 262144, ReqOne));
        Assert.Equal([(4096u, 3u)], await BlockStatusAsync(client, 0, 4096, ReqOne));

        // Trim the first data chunk: it becomes a hole that reads as zeroes.
        await client.SendRequestAsync(Trim, 2, 65536, 65536);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);
        Assert.Equal([(131072u, 3u), (65536u, 0u), (65536u, 3u)], await BlockStatusAsync(client, 0, 262144));

        // Write zeroes punches a whole chunk, but NO_HOLE keeps it allocated.
        await client.SendRequestAsync(WriteZeroes, 3, 131072, 65536, Fua);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);
        Assert.Equal(0, _disk.Inner.AllocatedBytes);
        await client.SendRequestAsync(WriteZeroes, 4, 0, 65536, NoHole);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);
        Assert.Equal(65536, _disk.Inner.AllocatedBytes);

        await client.SendRequestAsync(Read, 5, 0, 262144);
        var read = await client.ReceiveReplyAsync();
        Assert.All(read.Payload[8..], b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task Block_status_without_a_negotiated_context_is_einval()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk", structured: true);
        await client.SendRequestAsync(BlockStatus, 1, 0, 4096);
        var reply = await client.ReceiveReplyAsync();
        Assert.Equal(EINVAL, reply.Error);
    }

    [Fact]
    public async Task Block_status_context_for_another_export_is_not_active()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(8);
        await client.ReceiveOptionReplyAsync();
        await client.SendOptionAsync(10, NbdPipeClient.MetaContextRequest("ro", "base:allocation"));
        await client.ReceiveOptionRepliesAsync();
        await client.SendOptionAsync(7, NbdPipeClient.InfoRequest("disk"));
        await client.ReceiveOptionRepliesAsync();
        await client.SendRequestAsync(BlockStatus, 1, 0, 4096);
        Assert.Equal(EINVAL, (await client.ReceiveReplyAsync()).Error);
    }

    [Theory]
    [InlineData(Read, Size - 4096, 8192u)]
    [InlineData(Read, Size + 1, 0u)]
    [InlineData(Trim, Size - 4096, 8192u)]
    [InlineData(WriteZeroes, Size, 1u)]
    [InlineData(Read, long.MaxValue, 4096u)]
    public async Task Requests_past_the_end_are_einval_without_calling_the_target(ushort command, long offset, uint length)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(command, 5, (ulong)offset, length);
        Assert.Equal(EINVAL, (await client.ReceiveReplyAsync()).Error);
        await client.SendRequestAsync(Read, 6, ulong.MaxValue - 10, 4096);
        Assert.Equal(EINVAL, (await client.ReceiveReplyAsync()).Error);
        Assert.Equal(0, _disk.Calls);
    }

    [Fact]
    public async Task Write_past_the_end_consumes_its_payload_and_the_connection_goes_on()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(Write, 1, Size - 512, 4096, 0, Pattern(4096, 4));
        Assert.Equal(EINVAL, (await client.ReceiveReplyAsync()).Error);
        await client.SendRequestAsync(Read, 2, 0, 512);
        var read = await client.ReceiveReplyAsync(512);
        Assert.Equal((2ul, 0u), (read.Cookie, read.Error));
        Assert.Equal(1, _disk.Calls); // only the read reached the target
    }

    [Fact]
    public async Task Writes_to_a_read_only_export_are_eperm()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("ro", structured: true);
        await client.SendRequestAsync(Write, 1, 0, 4096, 0, new byte[4096]);
        await client.SendRequestAsync(Trim, 2, 0, 4096);
        await client.SendRequestAsync(WriteZeroes, 3, 0, 4096);
        var replies = new List<TransmissionReply>();
        for (var i = 0; i < 3; i++)
        {
            replies.Add(await client.ReceiveReplyAsync());
        }

        Assert.All(replies, r => Assert.Equal((ChunkError, EPERM, true), (r.Type, r.Error, r.Done)));
        Assert.Equal([1ul, 2ul, 3ul], replies.Select(r => r.Cookie).Order());
        Assert.Equal(0, _readOnly.Calls);
    }

    [Fact]
    public async Task Target_failures_become_errno_replies()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk", structured: true);
        _disk.WriteFailure = new BlockTargetException(BlockError.NoSpace, "pool full");
        await client.SendRequestAsync(Write, 1, 0, 4096, 0, new byte[4096]);
        var full = await client.ReceiveReplyAsync();
        Assert.Equal((ChunkError, ENOSPC), (full.Type, full.Error));

        _disk.WriteFailure = new InvalidOperationException("bug in a target");
        await client.SendRequestAsync(Write, 2, 0, 4096, 0, new byte[4096]);
        Assert.Equal(EIO, (await client.ReceiveReplyAsync()).Error);

        // The connection survives both.
        _disk.WriteFailure = null;
        await client.SendRequestAsync(Write, 3, 0, 4096, 0, new byte[4096]);
        Assert.Equal(0u, (await client.ReceiveReplyAsync()).Error);
    }

    [Theory]
    [InlineData(BlockError.OutOfRange, 22u)]
    [InlineData(BlockError.InvalidArgument, 22u)]
    [InlineData(BlockError.ReadOnly, 1u)]
    [InlineData(BlockError.NoSpace, 28u)]
    [InlineData(BlockError.NotSupported, 95u)]
    [InlineData(BlockError.IOError, 5u)]
    [InlineData(BlockError.Closed, 108u)]
    public void Block_errors_map_to_nbd_errno(BlockError error, uint errno)
        => Assert.Equal(errno, (uint)NbdErrors.ToErrno(error));

    [Theory]
    [InlineData(Cache, 0)]
    [InlineData((ushort)42, 0)]
    [InlineData(Read, NoHole)]
    [InlineData(Read, ReqOne)]
    [InlineData(Read, Df)] // DF needs structured replies
    [InlineData(Trim, 0x40)]
    public async Task Unknown_commands_and_flags_are_einval(ushort command, ushort flags)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(command, 77, 0, 4096, flags);
        var reply = await client.ReceiveReplyAsync();
        Assert.Equal((77ul, EINVAL), (reply.Cookie, reply.Error));
        await client.SendRequestAsync(Read, 78, 0, 4096);
        Assert.Equal(0u, (await client.ReceiveReplyAsync(4096)).Error);
    }

    [Fact]
    public async Task Malformed_request_closes_only_that_connection()
    {
        await using var good = new NbdPipeClient(_catalog);
        await good.ConnectAsync("disk");
        await using var bad = new NbdPipeClient(_catalog);
        await bad.ConnectAsync("disk");

        var request = NbdPipeClient.Request(Read, 1, 0, 4096);
        request[0] ^= 0xff;
        await bad.SendAsync(request);
        await bad.AssertClosedAsync();

        await good.SendRequestAsync(Read, 2, 0, 4096);
        Assert.Equal(0u, (await good.ReceiveReplyAsync(4096)).Error);
        Assert.Equal(1, _catalog.OpenLeases);
    }

    [Fact]
    public async Task Write_longer_than_the_maximum_payload_closes_the_connection()
    {
        await using var client = new NbdPipeClient(_catalog, new NbdServerOptions { MaxRequestPayload = 1024 * 1024 });
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(Write, 1, 0, (1024 * 1024) + 4096);
        await client.AssertClosedAsync();
        Assert.Equal(0, _catalog.OpenLeases);
        Assert.Equal(0, _disk.Calls);
    }

    [Fact]
    public async Task Read_longer_than_the_maximum_payload_is_einval()
    {
        await using var client = new NbdPipeClient(_catalog, new NbdServerOptions { MaxRequestPayload = 1024 * 1024 });
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(Read, 1, 0, (1024 * 1024) + 4096);
        Assert.Equal(EINVAL, (await client.ReceiveReplyAsync()).Error);
    }

    [Fact]
    public async Task Replies_complete_out_of_order()
    {
        _disk.GatedReadOffset = 0;
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk", structured: true);
        await client.SendRequestAsync(Read, 1, 0, 4096);
        Assert.Equal(0, await _disk.ReadsStarted.Reader.ReadAsync()); // the slow one is inside the target
        await client.SendRequestAsync(Read, 2, 4096, 4096);

        var first = await client.ReceiveReplyAsync();
        Assert.Equal(2ul, first.Cookie);
        _disk.Gate.SetResult();
        var second = await client.ReceiveReplyAsync();
        Assert.Equal((1ul, ChunkOffsetData), (second.Cookie, second.Type));
    }

    [Fact]
    public async Task In_flight_requests_are_bounded()
    {
        const int limit = 3;
        const int requests = 12;
        _disk.ReadsNeedPermit = true;
        await using var client = new NbdPipeClient(_catalog, new NbdServerOptions { MaxInFlightPerConnection = limit });
        await client.ConnectAsync("disk", structured: true);
        for (var i = 0; i < requests; i++)
        {
            await client.SendRequestAsync(Read, (ulong)i, (ulong)i * 4096, 4096);
        }

        // Each read waits for a permit; grant them one at a time once `limit` reads are inside.
        for (var i = 0; i < limit; i++)
        {
            await _disk.ReadsStarted.Reader.ReadAsync();
        }

        var cookies = new List<ulong>();
        for (var i = 0; i < requests; i++)
        {
            Assert.Equal(limit, _disk.MaxRunning);
            _disk.Permits.Release();
            cookies.Add((await client.ReceiveReplyAsync()).Cookie);
            if (i + limit < requests)
            {
                await _disk.ReadsStarted.Reader.ReadAsync();
            }
        }

        Assert.Equal(limit, _disk.MaxRunning);
        Assert.Equal(Enumerable.Range(0, requests).Select(i => (ulong)i), cookies.Order());
    }

    [Fact]
    public async Task Disconnect_waits_for_in_flight_requests_before_releasing_the_export()
    {
        _disk.GatedReadOffset = 8192;
        var readFinished = false;
        var lateRelease = true;
        _catalog.OnLeaseDisposing = () => lateRelease = Volatile.Read(ref readFinished);
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        await client.SendRequestAsync(Read, 1, 8192, 4096);
        await _disk.ReadsStarted.Reader.ReadAsync();
        await client.SendRequestAsync(Disc, 2, 0, 0);
        await client.CloseAsync();
        Assert.False(client.SessionTask.IsCompleted);
        Assert.Equal(1, _catalog.OpenLeases);

        Volatile.Write(ref readFinished, true);
        _disk.Gate.SetResult();
        var reply = await client.ReceiveReplyAsync(4096);
        Assert.Equal((1ul, 0u), (reply.Cookie, reply.Error));
        await client.AssertClosedAsync();
        Assert.True(lateRelease);
        Assert.Equal(0, _catalog.OpenLeases);
    }

    [Fact]
    public async Task Client_vanishing_mid_write_payload_ends_the_session_cleanly()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        var request = NbdPipeClient.Request(Write, 1, 0, 65536);
        await client.SendAsync([.. request, .. new byte[1000]]);
        await client.CloseAsync();
        await client.AssertClosedAsync();
        Assert.Equal(0, _catalog.OpenLeases);
        Assert.Equal(0, _disk.Calls);
    }

    [Fact]
    public async Task Client_vanishing_inside_a_header_ends_the_session_cleanly()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.ConnectAsync("disk");
        await client.SendAsync(NbdPipeClient.Request(Read, 1, 0, 4096)[..10]);
        await client.CloseAsync();
        await client.AssertClosedAsync();
        Assert.Equal(0, _catalog.OpenLeases);
    }

    private static async Task<List<(uint Length, uint Flags)>> BlockStatusAsync(NbdPipeClient client, ulong offset, uint length, ushort flags = 0)
    {
        await client.SendRequestAsync(BlockStatus, 100, offset, length, flags);
        var reply = await client.ReceiveReplyAsync();
        Assert.True(reply.Done);
        Assert.Equal(ChunkBlockStatus, reply.Type);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(reply.Payload));
        var extents = new List<(uint, uint)>();
        for (var at = 4; at < reply.Payload.Length; at += 8)
        {
            extents.Add((BinaryPrimitives.ReadUInt32BigEndian(reply.Payload.AsSpan(at)), BinaryPrimitives.ReadUInt32BigEndian(reply.Payload.AsSpan(at + 4))));
        }

        return extents;
    }
}
