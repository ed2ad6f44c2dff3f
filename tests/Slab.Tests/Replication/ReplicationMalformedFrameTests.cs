using Slab.Common;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Slab.Block;
using Slab.Replication;
using Xunit;

namespace Slab.Tests.Replication;

/// <summary>
/// A raw peer sends broken frames: each closes its own connection without touching the target,
/// while another connection keeps working.
/// </summary>
public sealed class ReplicationMalformedFrameTests : IAsyncLifetime
{
    private const int Size = 1 << 20;
    private readonly PipeHarness _harness = new(size: Size, serverOptions: new ReplicationOptions { MaxPayload = 64 << 10 });
    private byte[] _initial = [];

    public async Task InitializeAsync()
    {
        _initial = TestData.Pattern(Size, 42);
        await _harness.Probe.Inner.WriteAsync(0, _initial, BlockWriteFlags.None, default);
    }

    public async Task DisposeAsync() => await _harness.DisposeAsync();

    public static TheoryData<string> Cases() =>
    [
        "bad hello magic", "bad hello crc", "truncated hello", "bad request magic", "bad header crc", "oversized write",
        "oversized read", "truncated header", "truncated payload", "bad payload crc", "garbage after hello",
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Malformed_frame_closes_only_that_connection(string kind)
    {
        var good = _harness.Client();
        await good.PingAsync(default);

        await using var raw = new RawPeer(_harness.Server);
        if (!kind.Contains("hello", StringComparison.Ordinal) || kind == "garbage after hello")
        {
            await raw.HelloAsync();
        }

        var payload = TestData.Pattern(4096, 7);
        switch (kind)
        {
            case "bad hello magic":
                var hello = raw.Hello();
                hello[0] ^= 0xFF;
                await raw.SendAsync(hello);
                break;
            case "bad hello crc":
                var badCrc = raw.Hello();
                badCrc[10] ^= 0x01;
                await raw.SendAsync(badCrc);
                break;
            case "truncated hello":
                await raw.SendAsync(raw.Hello().AsMemory(0, 20));
                await raw.EndAsync();
                break;
            case "bad request magic":
                var frame = RawPeer.Request(ReplicaOpcode.Write, 0, payload);
                BinaryPrimitives.WriteUInt32LittleEndian(frame, 0xDEADBEEF);
                await raw.SendAsync(frame);
                break;
            case "bad header crc":
                var flipped = RawPeer.Request(ReplicaOpcode.Write, 0, payload);
                flipped[41] ^= 0x10; // the offset: a write elsewhere if the crc were not checked
                await raw.SendAsync(flipped);
                break;
            case "oversized write":
                await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Write, 0, new byte[(64 << 10) + 4096]));
                break;
            case "oversized read":
                await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Read, 0, [], length: (64 << 10) + 1));
                break;
            case "truncated header":
                await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Write, 0, payload).AsMemory(0, 30));
                await raw.EndAsync();
                break;
            case "truncated payload":
                await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Write, 0, payload).AsMemory(0, ReplicaProtocol.RequestHeaderSize + 100));
                await raw.EndAsync();
                break;
            case "bad payload crc":
                var corrupt = RawPeer.Request(ReplicaOpcode.Write, 0, payload);
                corrupt[ReplicaProtocol.RequestHeaderSize + 5] ^= 0x01;
                await raw.SendAsync(corrupt);
                break;
            case "garbage after hello":
                await raw.SendAsync(TestData.Pattern(500, 3));
                break;
        }

        // The server closed this connection: its output ends and the session finished.
        await raw.ReadToEndAsync().WaitAsync(TestData.Patience);
        await raw.Serving.WaitAsync(TestData.Patience);

        Assert.Equal(0, _harness.Probe.Calls);
        var after = new byte[Size];
        await _harness.Probe.Inner.ReadAsync(0, after, default);
        Assert.True(_initial.AsSpan().SequenceEqual(after), "the target's data changed");

        // Another connection is unaffected.
        var back = new byte[4096];
        await good.ReadAsync(8192, back, default);
        Assert.Equal(_initial.AsSpan(8192, 4096).ToArray(), back);
    }

    [Fact]
    public async Task Raw_frames_follow_the_documented_layout()
    {
        await using var raw = new RawPeer(_harness.Server);
        var reply = await raw.HelloAsync();
        Assert.Equal(0x53484C53u, BinaryPrimitives.ReadUInt32LittleEndian(reply));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(4)));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(reply.AsSpan(6)));
        Assert.Equal(PipeHarness.ServerNode, new Guid(reply.AsSpan(8, 16), bigEndian: true));
        Assert.Equal(64u << 10, BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(24)));

        // Pipelined: a write and a read of another block, each answered with its request id, in any order.
        var data = TestData.Pattern(4096, 9);
        await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Write, 12288, data, requestId: 77));
        await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Read, 8192, [], length: 4096, requestId: 78));
        var responses = await RawFrames.ReadResponsesAsync(raw.ReadExactAsync, 2);
        var write = responses[77].Header;
        Assert.Equal(0x50524C53u, BinaryPrimitives.ReadUInt32LittleEndian(write));
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(write.AsSpan(4)));
        Assert.Equal(77ul, BinaryPrimitives.ReadUInt64LittleEndian(write.AsSpan(8)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(write.AsSpan(16)));
        Assert.Equal(Crc32C.Compute(write.AsSpan(0, 24)), BinaryPrimitives.ReadUInt32LittleEndian(write.AsSpan(24)));
        var read = responses[78];
        var expected = _initial.AsSpan(8192, 4096).ToArray();
        Assert.Equal(ReplicaStatus.Ok, read.Status);
        Assert.Equal(78ul, BinaryPrimitives.ReadUInt64LittleEndian(read.Header.AsSpan(8)));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32LittleEndian(read.Header.AsSpan(16)));
        Assert.Equal(Crc32C.Compute(expected), BinaryPrimitives.ReadUInt32LittleEndian(read.Header.AsSpan(20)));
        Assert.Equal(expected, read.Data);

        // The write is acknowledged: a read issued after its response sees it.
        await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Read, 12288, [], length: 4096, requestId: 81));
        var after = Assert.Single(await RawFrames.ReadResponsesAsync(raw.ReadExactAsync, 1));
        Assert.Equal(81ul, after.Key);
        Assert.Equal(data, after.Value.Data);

        // Unknown opcodes and flags are answered, not fatal.
        await raw.SendAsync(RawPeer.Request((ReplicaOpcode)99, 0, [], requestId: 79));
        Assert.Equal((ushort)ReplicaStatus.NotSupported, BinaryPrimitives.ReadUInt16LittleEndian((await raw.ReadExactAsync(ReplicaProtocol.ResponseHeaderSize)).AsSpan(4)));
        await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Flush, 0, [], requestId: 80, flags: ReplicaRequestFlags.NoHole));
        Assert.Equal((ushort)ReplicaStatus.InvalidArgument, BinaryPrimitives.ReadUInt16LittleEndian((await raw.ReadExactAsync(ReplicaProtocol.ResponseHeaderSize)).AsSpan(4)));
    }

    [Fact]
    public async Task Server_bounds_in_flight_requests_per_connection()
    {
        await using var harness = new PipeHarness(serverOptions: new ReplicationOptions { MaxInFlightPerConnection = 3 });
        harness.Probe.Gated = _ => true;
        await using var raw = new RawPeer(harness.Server);
        await raw.HelloAsync();
        for (var i = 0; i < 10; i++)
        {
            await raw.SendAsync(RawPeer.Request(ReplicaOpcode.Write, i * 4096, TestData.Pattern(4096, i), requestId: (ulong)i));
        }

        await harness.Probe.WaitForRunningAsync(3).WaitAsync(TestData.Patience);
        Assert.Equal(3, harness.Probe.Running);
        harness.Probe.OpenGate();
        var ids = new HashSet<ulong>();
        for (var i = 0; i < 10; i++)
        {
            ids.Add(BinaryPrimitives.ReadUInt64LittleEndian((await raw.ReadExactAsync(ReplicaProtocol.ResponseHeaderSize)).AsSpan(8)));
        }

        Assert.Equal(Enumerable.Range(0, 10).Select(i => (ulong)i).ToHashSet(), ids);
        Assert.Equal(3, harness.Probe.MaxRunning);
    }

    [Fact]
    public void Crc32c_matches_the_standard_check_value_in_hardware_and_software()
    {
        var check = "123456789"u8;
        Assert.Equal(0xE3069283u, Crc32C.Compute(check));
        Assert.Equal(0xE3069283u, Crc32C.ComputeSoftware(check));
        var data = TestData.Pattern(10007, 1);
        Assert.Equal(Crc32C.ComputeSoftware(data), Crc32C.Compute(data));
        Assert.Equal(Crc32C.Compute(data), Crc32C.Append(Crc32C.Compute(data.AsSpan(0, 333)), data.AsSpan(333)));
        Assert.Equal(0u, Crc32C.Compute([]));
    }

    /// <summary>A peer speaking raw bytes to a server connection over in-memory pipes.</summary>
    private sealed class RawPeer : IAsyncDisposable
    {
        private readonly Pipe _toServer = new();
        private readonly Pipe _toClient = new();

        public RawPeer(ReplicaServer server)
        {
            Serving = Task.Run(() => server.ServeAsync(new PipeNetwork.Duplex(_toServer.Reader, _toClient.Writer), "raw", CancellationToken.None));
        }

        public Task Serving { get; }

        public byte[] Hello() => RawFrames.Hello();

        public async Task<byte[]> HelloAsync()
        {
            await SendAsync(Hello());
            return await ReadExactAsync(ReplicaProtocol.ServerHelloSize);
        }

        public static byte[] Request(ReplicaOpcode opcode, long offset, byte[] payload, uint? length = null, ulong requestId = 1, ReplicaRequestFlags flags = ReplicaRequestFlags.None)
            => RawFrames.Request(opcode, offset, payload, length, requestId, flags);

        public async Task SendAsync(ReadOnlyMemory<byte> bytes)
        {
            await _toServer.Writer.WriteAsync(bytes);
        }

        public async Task EndAsync() => await _toServer.Writer.CompleteAsync();

        public async Task<byte[]> ReadExactAsync(int count)
        {
            while (true)
            {
                var result = await _toClient.Reader.ReadAsync();
                if (result.Buffer.Length >= count)
                {
                    var bytes = result.Buffer.Slice(0, count).ToArray();
                    _toClient.Reader.AdvanceTo(result.Buffer.GetPosition(count));
                    return bytes;
                }

                Assert.False(result.IsCompleted, "the server closed the connection");
                _toClient.Reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            }
        }

        /// <summary>Reads until the server completes its output; returns how many bytes came.</summary>
        public async Task<long> ReadToEndAsync()
        {
            long total = 0;
            while (true)
            {
                var result = await _toClient.Reader.ReadAsync();
                total += result.Buffer.Length;
                _toClient.Reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted)
                {
                    return total;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _toServer.Writer.CompleteAsync();
            await Serving.WaitAsync(TestData.Patience);
            await _toClient.Reader.CompleteAsync();
        }
    }
}
