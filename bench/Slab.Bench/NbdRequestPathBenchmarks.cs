using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Buffers;
using Slab.Frontend.Nbd;

namespace Slab.Bench;

/// <summary>
/// One NBD request end to end without sockets: the client writes a request into an in-memory pipe,
/// the session parses it, dispatches it to the thread pool, calls a <see cref="MemoryBlockTarget"/>
/// and encodes the reply, which the client consumes. Allocated bytes per operation should be 0.
/// </summary>
/// <remarks>
/// The client waits for the reply by spinning on the pipe's ValueTask, so the harness itself never
/// allocates (no Task per operation). Structured replies are negotiated, as libnbd clients do.
/// </remarks>
[MemoryDiagnoser]
public class NbdRequestPathBenchmarks
{
    private const int BlockSize = 4096;

    private readonly byte[] _readRequest = new byte[28];
    private readonly byte[] _writeRequest = new byte[28 + BlockSize];
    private Pipe _toServer = null!;
    private Pipe _toClient = null!;
    private Task _session = null!;
    private ulong _cookie;

    /// <summary>
    /// What the session serves: the memory target itself, or a volume controller over it as slabd
    /// serves a volume (its I/O counters and its QoS front door on the path; no limits set, so the
    /// limiter is not consulted, as for a volume without QoS).
    /// </summary>
    [Params("memory", "controller")]
    public string Target { get; set; } = "memory";

    [GlobalSetup]
    public void Setup()
    {
        var memory = new MemoryBlockTarget(1L << 30);
        // Pre-populate the block the benchmarks touch so reads copy real data.
        memory.WriteAsync(1 << 20, new byte[BlockSize], BlockWriteFlags.None, default).AsTask().GetAwaiter().GetResult();
        IBlockTarget target = Target == "controller"
            ? new Volumes.VolumeController(
                "bench-id", "bench", memory.Size, 1,
                [new Volumes.ReplicaMember("node", "node", new MemoryReplica(memory), Volumes.ReplicaMode.InSync, IsLocal: true)],
                authority: null, NullLogger.Instance)
            : memory;
        var options = new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);
        _toServer = new Pipe(options);
        _toClient = new Pipe(options);
        var session = new NbdSession(new Duplex(_toServer.Reader, _toClient.Writer), new Catalog(target), new NbdServerOptions(), TimeProvider.System, NullLogger.Instance, "bench");
        _session = Task.Run(() => session.RunAsync(CancellationToken.None));

        Handshake();
        EncodeRequest(_readRequest, command: 0, length: BlockSize);
        EncodeRequest(_writeRequest, command: 1, length: BlockSize);
        Random.Shared.NextBytes(_writeRequest.AsSpan(28));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _toServer.Writer.Complete();
        _session.GetAwaiter().GetResult();
        _toClient.Reader.Complete();
    }

    [Benchmark(Description = "NBD READ 4 KiB (parse, target, structured reply)")]
    public void Read4K() => RoundTrip(_readRequest, 20 + 8 + BlockSize);

    [Benchmark(Description = "NBD WRITE 4 KiB (parse payload, target, reply)")]
    public void Write4K() => RoundTrip(_writeRequest, 20); // NBD_REPLY_TYPE_NONE chunk with DONE

    private void RoundTrip(byte[] request, int replyLength)
    {
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), ++_cookie);
        var writer = _toServer.Writer;
        request.CopyTo(writer.GetSpan(request.Length));
        writer.Advance(request.Length);
        Wait(writer.FlushAsync());
        Receive(replyLength);
    }

    private void Receive(int length)
    {
        var reader = _toClient.Reader;
        while (true)
        {
            var result = Wait(reader.ReadAsync());
            var buffer = result.Buffer;
            if (buffer.Length >= length)
            {
                reader.AdvanceTo(buffer.GetPosition(length));
                return;
            }

            if (result.IsCompleted)
            {
                throw new InvalidOperationException("the session closed");
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static T Wait<T>(ValueTask<T> task)
    {
        var spinner = default(SpinWait);
        while (!task.IsCompleted)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }

        return task.GetAwaiter().GetResult();
    }

    private static void EncodeRequest(byte[] request, ushort command, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), 0);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), command);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), 1 << 20);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
    }

    /// <summary>Fixed newstyle greeting, structured replies, NBD_OPT_GO "bench".</summary>
    private void Handshake()
    {
        Receive(18);
        var message = new List<byte>();
        message.AddRange(BigEndian(3u));
        message.AddRange(Option(8, []));
        var go = new byte[4 + 5 + 2];
        BinaryPrimitives.WriteUInt32BigEndian(go, 5);
        "bench"u8.CopyTo(go.AsSpan(4));
        message.AddRange(Option(7, go));
        var writer = _toServer.Writer;
        writer.Write(message.ToArray());
        Wait(writer.FlushAsync());

        // Option replies until the ACK of GO.
        var reader = _toClient.Reader;
        Span<byte> header = stackalloc byte[20];
        while (true)
        {
            var result = Wait(reader.ReadAsync());
            var buffer = result.Buffer;
            if (buffer.Length < 20)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            buffer.Slice(0, 20).CopyTo(header);
            var option = BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
            var type = BinaryPrimitives.ReadUInt32BigEndian(header[12..]);
            var length = BinaryPrimitives.ReadUInt32BigEndian(header[16..]);
            if (buffer.Length < 20 + length)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            reader.AdvanceTo(buffer.GetPosition(20 + length));
            if (type != 1 && type != 3)
            {
                throw new InvalidOperationException($"option {option} failed with {type:x}");
            }

            if (option == 7 && type == 1)
            {
                return;
            }
        }

        static byte[] BigEndian(uint value)
        {
            var bytes = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
            return bytes;
        }

        static byte[] Option(uint option, byte[] data)
        {
            var bytes = new byte[16 + data.Length];
            BinaryPrimitives.WriteUInt64BigEndian(bytes, 0x49484156454F5054UL);
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(8), option);
            BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(12), (uint)data.Length);
            data.CopyTo(bytes, 16);
            return bytes;
        }
    }

    /// <summary>The memory target as a controller's replica.</summary>
    private sealed class MemoryReplica(MemoryBlockTarget memory) : IReplicaTarget
    {
        public long Epoch { get; set; }

        public long Size => memory.Size;

        public BlockTargetFeatures Features => memory.Features;

        public BlockGeometry Geometry => memory.Geometry;

        public void Grow(long newSizeBytes) => memory.Resize(newSizeBytes);

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => memory.ReadAsync(offset, destination, cancellationToken);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken) => memory.WriteAsync(offset, source, flags, cancellationToken);

        public ValueTask FlushAsync(CancellationToken cancellationToken) => memory.FlushAsync(cancellationToken);

        public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => memory.TrimAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken) => memory.WriteZeroesAsync(offset, length, flags, cancellationToken);

        public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken) => memory.GetExtentsAsync(offset, length, destination, cancellationToken);

        public void Dispose()
        {
        }
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class Catalog(IBlockTarget target) : IExportCatalog
    {
        public IReadOnlyList<ExportDescription> ListExports() => [new("bench", "")];

        public ValueTask<IBlockTargetLease?> OpenExportAsync(string name, CancellationToken cancellationToken)
            => ValueTask.FromResult<IBlockTargetLease?>(new Lease(target));
    }

    private sealed class Lease(IBlockTarget target) : IBlockTargetLease
    {
        public IBlockTarget Target { get; } = target;

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

/// <summary>Renting and returning pooled aligned buffers (steady state: no allocation).</summary>
[MemoryDiagnoser]
public class AlignedBufferPoolBenchmarks
{
    [Params(4096, 1024 * 1024)]
    public int Size { get; set; }

    [Benchmark]
    public int RentReturn()
    {
        var buffer = AlignedBufferPool.Shared.Rent(Size);
        var capacity = buffer.Capacity;
        buffer.Return();
        return capacity;
    }
}
