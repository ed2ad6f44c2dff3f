using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Frontend.Nbd;
using Xunit;

namespace Slab.Tests.Nbd;

/// <summary>One option reply as received.</summary>
internal readonly record struct OptionReply(uint Option, uint Type, byte[] Data);

/// <summary>One transmission reply (simple, or one structured chunk).</summary>
internal readonly record struct TransmissionReply(bool Structured, ushort Flags, ushort Type, ulong Cookie, uint Error, byte[] Payload)
{
    public bool Done => !Structured || (Flags & 1) != 0;
}

/// <summary>
/// A raw NBD client driving an <see cref="NbdSession"/> over in-memory pipes (no sockets). Every
/// receive is bounded by a timeout so a hung server fails the test instead of hanging it.
/// </summary>
internal sealed class NbdPipeClient : IAsyncDisposable
{
    public const uint NbdFlagCFixedNewstyle = 1;
    public const uint NbdFlagCNoZeroes = 2;

    private static readonly TimeSpan ReceiveTimeout = TimeSpan.FromSeconds(15);

    private readonly Pipe _toServer = new();
    private readonly Pipe _toClient = new();

    public NbdPipeClient(IExportCatalog catalog, NbdServerOptions? options = null, TimeProvider? timeProvider = null, ILogger? logger = null)
    {
        Session = new NbdSession(
            new DuplexPipe(_toServer.Reader, _toClient.Writer),
            catalog,
            options ?? new NbdServerOptions(),
            timeProvider ?? TimeProvider.System,
            logger ?? NullLogger.Instance,
            "test");
        SessionTask = Task.Run(() => Session.RunAsync(CancellationToken.None));
    }

    public NbdSession Session { get; }

    /// <summary>Completes when <see cref="NbdSession.RunAsync"/> returns.</summary>
    public Task SessionTask { get; }

    private PipeReader Input => _toClient.Reader;

    private PipeWriter Output => _toServer.Writer;

    public static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);

    /// <summary>Reads the greeting and sends client flags; returns the handshake flags.</summary>
    public async Task<ushort> GreetAsync(uint clientFlags = NbdFlagCFixedNewstyle | NbdFlagCNoZeroes)
    {
        var greeting = await ReceiveAsync(18);
        Assert.Equal(0x4e42444d41474943UL, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(0x49484156454F5054UL, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, clientFlags);
        await SendAsync(bytes);
        return BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public async Task SendOptionAsync(uint option, byte[]? data = null)
    {
        data ??= [];
        var header = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(header, 0x49484156454F5054UL);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(12), (uint)data.Length);
        data.CopyTo(header, 16);
        await SendAsync(header);
    }

    public async Task<OptionReply> ReceiveOptionReplyAsync()
    {
        var header = await ReceiveAsync(20);
        Assert.Equal(0x3e889045565a9UL, BinaryPrimitives.ReadUInt64BigEndian(header));
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
        var data = await ReceiveAsync((int)length);
        return new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12)), data);
    }

    /// <summary>Replies up to and including the first ACK or error.</summary>
    public async Task<List<OptionReply>> ReceiveOptionRepliesAsync()
    {
        var replies = new List<OptionReply>();
        while (true)
        {
            var reply = await ReceiveOptionReplyAsync();
            replies.Add(reply);
            if (reply.Type == 1 || (reply.Type & 0x8000_0000) != 0)
            {
                return replies;
            }
        }
    }

    public static byte[] InfoRequest(string name, params ushort[] infos)
    {
        var nameBytes = Utf8(name);
        var data = new byte[4 + nameBytes.Length + 2 + (2 * infos.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)nameBytes.Length);
        nameBytes.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + nameBytes.Length), (ushort)infos.Length);
        for (var i = 0; i < infos.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + nameBytes.Length + (2 * i)), infos[i]);
        }

        return data;
    }

    public static byte[] MetaContextRequest(string export, params string[] queries)
    {
        var buffer = new List<byte>();
        void AddString(string s)
        {
            var bytes = Utf8(s);
            var length = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(length, (uint)bytes.Length);
            buffer.AddRange(length);
            buffer.AddRange(bytes);
        }

        AddString(export);
        var count = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(count, (uint)queries.Length);
        buffer.AddRange(count);
        foreach (var query in queries)
        {
            AddString(query);
        }

        return [.. buffer];
    }

    /// <summary>Full handshake to transmission with NBD_OPT_GO; returns (size, transmission flags).</summary>
    public async Task<(ulong Size, ushort Flags)> ConnectAsync(string export, bool structured = false, bool blockStatus = false)
    {
        await GreetAsync();
        if (structured)
        {
            await SendOptionAsync(8);
            Assert.Equal(1u, (await ReceiveOptionReplyAsync()).Type);
        }

        if (blockStatus)
        {
            await SendOptionAsync(10, MetaContextRequest(export, "base:allocation"));
            var replies = await ReceiveOptionRepliesAsync();
            Assert.Equal([4u, 1u], replies.Select(r => r.Type));
        }

        await SendOptionAsync(7, InfoRequest(export));
        var go = await ReceiveOptionRepliesAsync();
        Assert.Equal(1u, go[^1].Type);
        var info = go.Single(r => r.Type == 3 && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == 0).Data;
        return (BinaryPrimitives.ReadUInt64BigEndian(info.AsSpan(2)), BinaryPrimitives.ReadUInt16BigEndian(info.AsSpan(10)));
    }

    public Task SendRequestAsync(ushort type, ulong cookie, ulong offset, uint length, ushort flags = 0, byte[]? payload = null)
        => SendAsync(Request(type, cookie, offset, length, flags, payload));

    public static byte[] Request(ushort type, ulong cookie, ulong offset, uint length, ushort flags = 0, byte[]? payload = null)
    {
        var bytes = new byte[28 + (payload?.Length ?? 0)];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(24), length);
        payload?.CopyTo(bytes, 28);
        return bytes;
    }

    /// <summary>
    /// Receives one simple reply or structured chunk. <paramref name="readLength"/> is the data length
    /// expected after a successful simple reply (the client must know it from its request).
    /// </summary>
    public async Task<TransmissionReply> ReceiveReplyAsync(int readLength = 0)
    {
        var magicBytes = await ReceiveAsync(4);
        var magic = BinaryPrimitives.ReadUInt32BigEndian(magicBytes);
        if (magic == 0x67446698)
        {
            var rest = await ReceiveAsync(12);
            var error = BinaryPrimitives.ReadUInt32BigEndian(rest);
            var data = error == 0 && readLength > 0 ? await ReceiveAsync(readLength) : [];
            return new TransmissionReply(false, 0, 0, BinaryPrimitives.ReadUInt64BigEndian(rest.AsSpan(4)), error, data);
        }

        Assert.Equal(0x668e33efu, magic);
        var header = await ReceiveAsync(16);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        var payload = await ReceiveAsync((int)length);
        var type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2));
        var chunkError = (type & 0x8000) != 0 ? BinaryPrimitives.ReadUInt32BigEndian(payload) : 0;
        return new TransmissionReply(true, BinaryPrimitives.ReadUInt16BigEndian(header), type, BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(4)), chunkError, payload);
    }

    public async Task SendAsync(byte[] bytes)
    {
        await Output.WriteAsync(bytes);
    }

    /// <summary>Closes the client's sending side (the server sees end of input).</summary>
    public Task CloseAsync() => Output.CompleteAsync().AsTask();

    /// <summary>Receives exactly <paramref name="count"/> bytes; fails on end of stream or timeout.</summary>
    public async Task<byte[]> ReceiveAsync(int count)
    {
        var bytes = await TryReceiveAsync(count);
        Assert.True(bytes is not null, $"the server closed the connection while {count} bytes were expected");
        return bytes;
    }

    /// <summary>Receives exactly <paramref name="count"/> bytes; null when the server closed first.</summary>
    public async Task<byte[]?> TryReceiveAsync(int count)
    {
        if (count == 0)
        {
            return [];
        }

        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        while (true)
        {
            var result = await Input.ReadAsync(timeout.Token);
            var buffer = result.Buffer;
            if (buffer.Length >= count)
            {
                var bytes = buffer.Slice(0, count).ToArray();
                Input.AdvanceTo(buffer.GetPosition(count));
                return bytes;
            }

            if (result.IsCompleted)
            {
                Input.AdvanceTo(buffer.Start, buffer.End);
                return null;
            }

            Input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Asserts the server closes the connection (after any unread bytes) within the timeout.</summary>
    public async Task AssertClosedAsync()
    {
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        while (true)
        {
            var result = await Input.ReadAsync(timeout.Token);
            Input.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await SessionTask.WaitAsync(ReceiveTimeout);
    }

    public async ValueTask DisposeAsync()
    {
        await Output.CompleteAsync();
        await Input.CompleteAsync();
        await SessionTask.WaitAsync(ReceiveTimeout);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
