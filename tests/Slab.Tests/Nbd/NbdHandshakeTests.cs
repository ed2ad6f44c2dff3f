using System.Buffers.Binary;
using System.Text;
using Slab.Block;
using Slab.Frontend.Nbd;
using Xunit;

namespace Slab.Tests.Nbd;

/// <summary>Fixed newstyle handshake and every option, over in-memory pipes.</summary>
public sealed class NbdHandshakeTests
{
    private const ulong Size = 16 * 1024 * 1024;
    private const uint Ack = 1, RepServer = 2, RepInfo = 3, RepMetaContext = 4;
    private const uint ErrUnsup = 0x8000_0001, ErrInvalid = 0x8000_0003, ErrUnknown = 0x8000_0006, ErrTooBig = 0x8000_0009;
    private const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7, OptStructured = 8, OptListMeta = 9, OptSetMeta = 10;

    private readonly TestExportCatalog _catalog = new TestExportCatalog()
        .Add("disk", new MemoryBlockTarget((long)Size), "the disk")
        .Add("ro", new MemoryBlockTarget((long)Size, readOnly: true), "read-only");

    [Fact]
    public async Task Greeting_offers_fixed_newstyle_and_no_zeroes()
    {
        await using var client = new NbdPipeClient(_catalog);
        Assert.Equal(3, await client.GreetAsync());
    }

    [Theory]
    [InlineData(0u)] // plain (non-fixed) newstyle client
    [InlineData(NbdPipeClient.NbdFlagCNoZeroes)]
    [InlineData(NbdPipeClient.NbdFlagCFixedNewstyle | 4u)] // unknown client flag
    public async Task Clients_without_fixed_newstyle_or_with_unknown_flags_are_refused(uint clientFlags)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync(clientFlags);
        await client.AssertClosedAsync();
        Assert.Equal(0, _catalog.LeasesOpened);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Export_name_enters_transmission_with_or_without_zero_padding(bool noZeroes)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync(NbdPipeClient.NbdFlagCFixedNewstyle | (noZeroes ? NbdPipeClient.NbdFlagCNoZeroes : 0));
        await client.SendOptionAsync(OptExportName, NbdPipeClient.Utf8("disk"));
        var reply = await client.ReceiveAsync(10);
        Assert.Equal(Size, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.Equal(1 | 4 | 8 | 32 | 64 | 256, BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)));
        if (!noZeroes)
        {
            Assert.All(await client.ReceiveAsync(124), b => Assert.Equal(0, b));
        }

        // The next bytes are the reply to our first request: no stray padding.
        await client.SendRequestAsync(0, cookie: 7, offset: 0, length: 512);
        var read = await client.ReceiveReplyAsync(512);
        Assert.Equal((7ul, 0u, 512), (read.Cookie, read.Error, read.Payload.Length));
    }

    [Fact]
    public async Task Export_name_of_an_unknown_export_closes_the_connection()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptExportName, NbdPipeClient.Utf8("nope"));
        await client.AssertClosedAsync();
    }

    [Fact]
    public async Task Go_sends_export_info_block_size_and_the_requested_name_and_description()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, NbdPipeClient.InfoRequest("disk", 1, 2, 3));
        var replies = await client.ReceiveOptionRepliesAsync();
        Assert.All(replies, r => Assert.Equal(OptGo, r.Option));
        Assert.Equal(Ack, replies[^1].Type);
        var infos = replies.Where(r => r.Type == RepInfo).ToDictionary(r => BinaryPrimitives.ReadUInt16BigEndian(r.Data), r => r.Data);
        Assert.Equal(new ushort[] { 0, 1, 2, 3 }, infos.Keys.Order());
        Assert.Equal(12, infos[0].Length);
        Assert.Equal(Size, BinaryPrimitives.ReadUInt64BigEndian(infos[0].AsSpan(2)));
        Assert.Equal("disk", Encoding.UTF8.GetString(infos[1].AsSpan(2)));
        Assert.Equal("the disk", Encoding.UTF8.GetString(infos[2].AsSpan(2)));
        Assert.Equal(14, infos[3].Length);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(infos[3].AsSpan(2)));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(infos[3].AsSpan(6)));
        Assert.Equal(32u * 1024 * 1024, BinaryPrimitives.ReadUInt32BigEndian(infos[3].AsSpan(10)));
        Assert.Equal(1, _catalog.OpenLeases);
    }

    [Fact]
    public async Task Go_without_information_requests_sends_export_info_only_by_request_rules()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, NbdPipeClient.InfoRequest("ro"));
        var replies = await client.ReceiveOptionRepliesAsync();
        var types = replies.Where(r => r.Type == RepInfo).Select(r => BinaryPrimitives.ReadUInt16BigEndian(r.Data)).ToList();
        Assert.Contains((ushort)0, types);
        Assert.DoesNotContain((ushort)1, types);
        Assert.DoesNotContain((ushort)2, types);
        var export = replies.First(r => r.Type == RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == 0).Data;
        Assert.Equal(1 | 2 | 4 | 8 | 256, BinaryPrimitives.ReadUInt16BigEndian(export.AsSpan(10)));
    }

    [Fact]
    public async Task Info_releases_its_lease_and_go_follows()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptInfo, NbdPipeClient.InfoRequest("disk", 3));
        Assert.Equal(Ack, (await client.ReceiveOptionRepliesAsync())[^1].Type);
        Assert.Equal(0, _catalog.OpenLeases);
        await client.SendOptionAsync(OptGo, NbdPipeClient.InfoRequest("disk", 3));
        Assert.Equal(Ack, (await client.ReceiveOptionRepliesAsync())[^1].Type);
        Assert.Equal(1, _catalog.OpenLeases);
    }

    [Fact]
    public async Task Unknown_export_is_err_unknown_and_haggling_continues()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, NbdPipeClient.InfoRequest("missing"));
        var replies = await client.ReceiveOptionRepliesAsync();
        Assert.Equal([ErrUnknown], replies.Select(r => r.Type));
        await client.SendOptionAsync(OptInfo, NbdPipeClient.InfoRequest("missing"));
        Assert.Equal(ErrUnknown, (await client.ReceiveOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, NbdPipeClient.InfoRequest("disk"));
        Assert.Equal(Ack, (await client.ReceiveOptionRepliesAsync())[^1].Type);
    }

    public static TheoryData<byte[]> MalformedInfoRequests()
    {
        var valid = NbdPipeClient.InfoRequest("disk", 3);
        return new TheoryData<byte[]>
        {
            new byte[] { 0, 0, 0 },                         // shorter than the fixed part
            new byte[] { 0, 0, 0, 9, (byte)'d', 0, 0 },     // name longer than the data
            valid.Append((byte)0xff).ToArray(),             // trailing byte
            valid[..^1],                                    // truncated information request
        };
    }

    [Theory]
    [MemberData(nameof(MalformedInfoRequests))]
    public async Task Malformed_go_is_err_invalid(byte[] data)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, data);
        Assert.Equal(ErrInvalid, (await client.ReceiveOptionReplyAsync()).Type);
        Assert.Equal(0, _catalog.LeasesOpened);
    }

    [Fact]
    public async Task List_returns_every_export_then_ack()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptList);
        var replies = await client.ReceiveOptionRepliesAsync();
        Assert.Equal([RepServer, RepServer, Ack], replies.Select(r => r.Type));
        var names = new List<(string, string)>();
        foreach (var r in replies.SkipLast(1))
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(r.Data);
            names.Add((Encoding.UTF8.GetString(r.Data, 4, length), Encoding.UTF8.GetString(r.Data, 4 + length, r.Data.Length - 4 - length)));
        }

        Assert.Equal([("disk", "the disk"), ("ro", "read-only")], names.Order());

        await client.SendOptionAsync(OptList, [1]);
        Assert.Equal(ErrInvalid, (await client.ReceiveOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Abort_is_acknowledged_and_closes()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptAbort);
        Assert.Equal(Ack, (await client.ReceiveOptionReplyAsync()).Type);
        await client.AssertClosedAsync();
    }

    [Fact]
    public async Task Structured_reply_is_acknowledged_but_not_with_data()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructured, [0]);
        Assert.Equal(ErrInvalid, (await client.ReceiveOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptStructured);
        Assert.Equal(Ack, (await client.ReceiveOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Set_meta_context_needs_structured_replies()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptSetMeta, NbdPipeClient.MetaContextRequest("disk", "base:allocation"));
        Assert.Equal(ErrInvalid, (await client.ReceiveOptionReplyAsync()).Type);
    }

    [Fact]
    public async Task Set_meta_context_selects_base_allocation_and_ignores_unknown_contexts()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructured);
        await client.ReceiveOptionReplyAsync();

        await client.SendOptionAsync(OptSetMeta, NbdPipeClient.MetaContextRequest("disk", "x-foo:bar", "base:allocation", "base:nope", "qemu:dirty-bitmap:b"));
        var replies = await client.ReceiveOptionRepliesAsync();
        Assert.Equal([RepMetaContext, Ack], replies.Select(r => r.Type));
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32BigEndian(replies[0].Data));
        Assert.Equal("base:allocation", Encoding.UTF8.GetString(replies[0].Data.AsSpan(4)));

        foreach (var queries in new[] { new[] { "x-foo:bar" }, ["base:"], [] })
        {
            await client.SendOptionAsync(OptSetMeta, NbdPipeClient.MetaContextRequest("disk", queries));
            Assert.Equal([Ack], (await client.ReceiveOptionRepliesAsync()).Select(r => r.Type));
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task List_meta_context_lists_all_without_queries_and_matches_base_wildcard(bool structuredFirst)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        if (structuredFirst)
        {
            await client.SendOptionAsync(OptStructured);
            await client.ReceiveOptionReplyAsync();
        }

        foreach (var (queries, expected) in new (string[], uint[])[]
        {
            ([], [RepMetaContext, Ack]),
            (["base:"], [RepMetaContext, Ack]),
            (["base:allocation"], [RepMetaContext, Ack]),
            (["x-foo:"], [Ack]),
            (["base:other"], [Ack]),
        })
        {
            await client.SendOptionAsync(OptListMeta, NbdPipeClient.MetaContextRequest("disk", queries));
            var replies = await client.ReceiveOptionRepliesAsync();
            Assert.Equal(expected, replies.Select(r => r.Type));
            if (replies.Count == 2)
            {
                Assert.Equal("base:allocation", Encoding.UTF8.GetString(replies[0].Data.AsSpan(4)));
            }
        }
    }

    [Fact]
    public async Task Malformed_meta_context_request_is_err_invalid()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptStructured);
        await client.ReceiveOptionReplyAsync();
        var data = NbdPipeClient.MetaContextRequest("disk", "base:allocation");
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(8), 2); // claims two queries, has one
        await client.SendOptionAsync(OptSetMeta, data);
        Assert.Equal(ErrInvalid, (await client.ReceiveOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptListMeta, data[..^3]);
        Assert.Equal(ErrInvalid, (await client.ReceiveOptionReplyAsync()).Type);
    }

    [Theory]
    [InlineData(OptStartTls)]
    [InlineData(4u)]
    [InlineData(11u)]
    [InlineData(0xdeadu)]
    public async Task Unsupported_options_are_err_unsup_and_haggling_continues(uint option)
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(option, [1, 2, 3]);
        Assert.Equal(ErrUnsup, (await client.ReceiveOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptList);
        Assert.Equal(Ack, (await client.ReceiveOptionRepliesAsync())[^1].Type);
    }

    [Fact]
    public async Task Oversized_option_is_skipped_and_refused()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendOptionAsync(OptGo, new byte[200_000]);
        Assert.Equal(ErrTooBig, (await client.ReceiveOptionReplyAsync()).Type);
        await client.SendOptionAsync(OptGo, NbdPipeClient.InfoRequest("disk"));
        Assert.Equal(Ack, (await client.ReceiveOptionRepliesAsync())[^1].Type);
    }

    [Fact]
    public async Task Bad_option_magic_closes()
    {
        await using var client = new NbdPipeClient(_catalog);
        await client.GreetAsync();
        await client.SendAsync(new byte[16]);
        await client.AssertClosedAsync();
    }

    [Fact]
    public async Task Handshake_timeout_closes_the_connection()
    {
        var time = new ManualTimeProvider();
        await using var client = new NbdPipeClient(_catalog, new NbdServerOptions { HandshakeTimeout = TimeSpan.FromSeconds(3) }, time);
        await client.GreetAsync();
        await client.SendOptionAsync(OptList);
        await client.ReceiveOptionRepliesAsync();
        Assert.Equal(1, time.TimerCount);
        time.FireAll();
        await client.AssertClosedAsync();
    }

    [Fact]
    public async Task Timer_of_a_finished_handshake_does_not_close_transmission()
    {
        var time = new ManualTimeProvider();
        await using var client = new NbdPipeClient(_catalog, new NbdServerOptions(), time);
        await client.ConnectAsync("disk");
        time.FireAll();
        await client.SendRequestAsync(0, 1, 0, 4096);
        Assert.Equal(0u, (await client.ReceiveReplyAsync(4096)).Error);
    }
}
