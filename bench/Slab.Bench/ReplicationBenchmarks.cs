using System.IO.Pipelines;
using System.Net;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Buffers;
using Slab.Replication;

namespace Slab.Bench;

/// <summary>
/// One 4 KiB request of the replica protocol end to end: <see cref="RemoteReplicaTarget"/> →
/// client connection (frame, crc) → transport → <see cref="ReplicaServer"/> (parse, crc, fencing,
/// <see cref="MemoryBlockTarget"/>) → response → client. Over in-memory pipes (no sockets; allocated
/// bytes per operation should be 0) and over loopback TCP with <see cref="ReplicaSocketListener"/>.
/// </summary>
/// <remarks>The caller waits by spinning on the ValueTask so the harness itself allocates nothing.</remarks>
[MemoryDiagnoser]
public class ReplicationBenchmarks
{
    private const int BlockSize = 4096;
    private static readonly Guid Volume = Guid.NewGuid();

    private AlignedBuffer _buffer = null!;
    private RemoteReplicaTarget _pipeClient = null!;
    private RemoteReplicaTarget _tcpClient = null!;
    private ReplicaSocketListener _listener = null!;
    private Connector _pipes = null!;

    [GlobalSetup]
    public void Setup()
    {
        var target = new MemoryBlockTarget(1L << 30);
        target.WriteAsync(1 << 20, new byte[BlockSize], BlockWriteFlags.None, default).AsTask().GetAwaiter().GetResult();
        var resolver = new Resolver(target);
        var options = new ReplicationOptions { ConnectionsPerTarget = 1 };
        var server = new ReplicaServer(resolver, options, Guid.NewGuid(), TimeProvider.System, NullLogger.Instance);
        _pipes = new Connector(server);
        _pipeClient = new RemoteReplicaTarget(Volume, target.Size, 1, _pipes, options, Guid.NewGuid(), TimeProvider.System, NullLogger.Instance);

        _listener = new ReplicaSocketListener(new IPEndPoint(IPAddress.Loopback, 0), server, NullLoggerFactory.Instance);
        _listener.Start();
        _tcpClient = new RemoteReplicaTarget(Volume, target.Size, 1, new TcpReplicaConnector(_listener.LocalEndPoint), options, Guid.NewGuid(), TimeProvider.System, NullLogger.Instance);

        _buffer = AlignedBufferPool.Shared.Rent(BlockSize);
        Random.Shared.NextBytes(_buffer.GetSpan());
        Wait(_pipeClient.FlushAsync(default));
        Wait(_tcpClient.FlushAsync(default));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pipeClient.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _tcpClient.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _listener.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _buffer.Return();
    }

    [Benchmark(Description = "pipes: WRITE 4 KiB round trip")]
    public void PipeWrite4K() => Wait(_pipeClient.WriteAsync(1 << 20, _buffer.Memory[..BlockSize], BlockWriteFlags.None, default));

    [Benchmark(Description = "pipes: READ 4 KiB round trip")]
    public void PipeRead4K() => Wait(_pipeClient.ReadAsync(1 << 20, _buffer.Memory[..BlockSize], default));

    [Benchmark(Description = "TCP loopback: WRITE 4 KiB round trip")]
    public void TcpWrite4K() => Wait(_tcpClient.WriteAsync(1 << 20, _buffer.Memory[..BlockSize], BlockWriteFlags.None, default));

    [Benchmark(Description = "TCP loopback: READ 4 KiB round trip")]
    public void TcpRead4K() => Wait(_tcpClient.ReadAsync(1 << 20, _buffer.Memory[..BlockSize], default));

    private static void Wait(ValueTask task)
    {
        var spinner = default(SpinWait);
        while (!task.IsCompleted)
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }

        task.GetAwaiter().GetResult();
    }

    private sealed class Resolver(IBlockTarget target) : IReplicaResolver
    {
        private readonly EpochGate _gate = new(1);

        public bool TryGetReplica(Guid volumeId, out ReplicaHandle replica)
        {
            replica = new ReplicaHandle(target, _gate);
            return volumeId == Volume;
        }

        public ValueTask<bool> TryAdvanceEpochAsync(Guid volumeId, long epoch, CancellationToken cancellationToken) => ValueTask.FromResult(false);
    }

    /// <summary>Each connect runs a server connection on a fresh pair of in-memory pipes.</summary>
    private sealed class Connector(ReplicaServer server) : IReplicaConnector
    {
        public string RemoteName => "in-memory";

        public ValueTask<IReplicaTransport> ConnectAsync(CancellationToken cancellationToken)
        {
            var options = new PipeOptions(readerScheduler: PipeScheduler.Inline, writerScheduler: PipeScheduler.Inline, useSynchronizationContext: false);
            var toServer = new Pipe(options);
            var toClient = new Pipe(options);
            _ = Task.Run(() => server.ServeAsync(new Duplex(toServer.Reader, toClient.Writer), "bench", CancellationToken.None), CancellationToken.None);
            return ValueTask.FromResult<IReplicaTransport>(new Transport(new Duplex(toClient.Reader, toServer.Writer)));
        }
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class Transport(IDuplexPipe pipe) : IReplicaTransport
    {
        public PipeReader Input => pipe.Input;

        public PipeWriter Output => pipe.Output;

        public void Abort()
        {
            Input.CancelPendingRead();
            Output.CancelPendingFlush();
        }

        public async ValueTask DisposeAsync()
        {
            Abort();
            await Input.CompleteAsync();
            await Output.CompleteAsync();
        }
    }
}
