using Slab.Common;
using System.IO.Pipelines;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Replication;

namespace Slab.Tests.Replication;

/// <summary>A TimeProvider whose clock only moves when a test calls <see cref="Advance"/>; due timers fire inside Advance.</summary>
internal sealed class ManualTimeProvider : TimeProvider
{
    private readonly Lock _lock = new();
    private readonly List<ManualTimer> _timers = [];
    private long _now;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp()
    {
        lock (_lock)
        {
            return _now;
        }
    }

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddTicks(GetTimestamp());

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(this, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    /// <summary>Moves the clock and runs every timer that became due, on the calling thread.</summary>
    public void Advance(TimeSpan by)
    {
        List<ManualTimer> due;
        lock (_lock)
        {
            _now += by.Ticks;
            due = _timers.Where(t => t.DueAt is { } at && at <= _now).ToList();
            foreach (var timer in due)
            {
                timer.DueAt = timer.Period is { } period && period > TimeSpan.Zero ? _now + period.Ticks : null;
            }
        }

        foreach (var timer in due)
        {
            timer.Fire();
        }
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        public long? DueAt { get; set; }

        public TimeSpan? Period { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (owner._lock)
            {
                if (!owner._timers.Contains(this))
                {
                    owner._timers.Add(this);
                }

                DueAt = dueTime == Timeout.InfiniteTimeSpan ? null : owner._now + dueTime.Ticks;
                Period = period == Timeout.InfiniteTimeSpan ? null : period;
            }

            return true;
        }

        public void Fire() => callback(state);

        public void Dispose()
        {
            lock (owner._lock)
            {
                owner._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>
/// A block target for replication tests: delegates to a <see cref="MemoryBlockTarget"/>, counts calls
/// and concurrency, records write flags, and can hold calls at a gate or throw a chosen failure.
/// </summary>
internal sealed class ProbeTarget(long size, bool readOnly = false) : IBlockTarget
{
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _calls;
    private int _running;
    private int _maxRunning;
    private TaskCompletionSource _arrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _arrivalTarget = int.MaxValue;

    public MemoryBlockTarget Inner { get; } = new(size, readOnly);

    public long Size => Inner.Size;

    public BlockTargetFeatures Features => Inner.Features;

    public BlockGeometry Geometry => Inner.Geometry;

    public int Calls => Volatile.Read(ref _calls);

    public int Running => Volatile.Read(ref _running);

    public int MaxRunning => Volatile.Read(ref _maxRunning);

    /// <summary>Calls whose offset satisfies this wait for <see cref="OpenGate"/> (or cancellation).</summary>
    public Func<long, bool>? Gated { get; set; }

    public Exception? Failure { get; set; }

    public BlockWriteFlags LastWriteFlags { get; private set; }

    public WriteZeroesFlags LastZeroFlags { get; private set; }

    public void OpenGate() => _gate.TrySetResult();

    /// <summary>Completes when <paramref name="count"/> calls are running at once.</summary>
    public Task WaitForRunningAsync(int count)
    {
        lock (_gate)
        {
            _arrivalTarget = count;
            _arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_running >= count)
            {
                _arrived.TrySetResult();
            }

            return _arrived.Task;
        }
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        await EnterAsync(offset, cancellationToken);
        try
        {
            await Inner.ReadAsync(offset, destination, cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        await EnterAsync(offset, cancellationToken);
        try
        {
            LastWriteFlags = flags;
            await Inner.WriteAsync(offset, source, flags, cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    public async ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        await EnterAsync(-1, cancellationToken);
        try
        {
            await Inner.FlushAsync(cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    public async ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        await EnterAsync(offset, cancellationToken);
        try
        {
            await Inner.TrimAsync(offset, length, cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        await EnterAsync(offset, cancellationToken);
        try
        {
            LastZeroFlags = flags;
            await Inner.WriteZeroesAsync(offset, length, flags, cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    public async ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        await EnterAsync(offset, cancellationToken);
        try
        {
            return await Inner.GetExtentsAsync(offset, length, destination, cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    private async ValueTask EnterAsync(long offset, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        var running = Interlocked.Increment(ref _running);
        int max;
        while (running > (max = Volatile.Read(ref _maxRunning)) && Interlocked.CompareExchange(ref _maxRunning, running, max) != max)
        {
        }

        lock (_gate)
        {
            if (running >= _arrivalTarget)
            {
                _arrived.TrySetResult();
            }
        }

        try
        {
            if (Failure is { } failure)
            {
                throw failure;
            }

            if (Gated is { } gated && gated(offset))
            {
                await _gate.Task.WaitAsync(cancellationToken);
            }
        }
        catch
        {
            Exit();
            throw;
        }
    }

    private void Exit() => Interlocked.Decrement(ref _running);
}

/// <summary>An <see cref="IReplicaResolver"/> over a dictionary; higher epochs are accepted when <see cref="AcceptHigherEpochs"/>.</summary>
internal sealed class TestResolver : IReplicaResolver
{
    private readonly Dictionary<Guid, ReplicaHandle> _replicas = [];
    private readonly Lock _lock = new();

    public bool AcceptHigherEpochs { get; set; } = true;

    public List<(Guid Volume, long Epoch)> AdvanceRequests { get; } = [];

    /// <summary>Completes when a request asks to advance the epoch (the request is then waiting at the server).</summary>
    public TaskCompletionSource AdvanceRequested { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public TestResolver Add(Guid volumeId, IBlockTarget target, long epoch = 1)
    {
        lock (_lock)
        {
            _replicas[volumeId] = new ReplicaHandle(target, new EpochGate(epoch));
        }

        return this;
    }

    public long EpochOf(Guid volumeId)
    {
        lock (_lock)
        {
            return _replicas[volumeId].Gate.Epoch;
        }
    }

    public bool TryGetReplica(Guid volumeId, out ReplicaHandle replica)
    {
        lock (_lock)
        {
            return _replicas.TryGetValue(volumeId, out replica);
        }
    }

    public async ValueTask<bool> TryAdvanceEpochAsync(Guid volumeId, long epoch, CancellationToken cancellationToken)
    {
        EpochGate gate;
        lock (_lock)
        {
            AdvanceRequests.Add((volumeId, epoch));
            AdvanceRequested.TrySetResult();
            if (!AcceptHigherEpochs)
            {
                return false;
            }

            gate = _replicas[volumeId].Gate;
        }

        await gate.RaiseAsync(epoch, static (_, _) => Task.CompletedTask, cancellationToken);
        return true;
    }

    /// <summary>Raises the replica's epoch as the control plane would after a take-over.</summary>
    public Task RaiseEpochAsync(Guid volumeId, long epoch)
    {
        EpochGate gate;
        lock (_lock)
        {
            gate = _replicas[volumeId].Gate;
        }

        return gate.RaiseAsync(epoch, static (_, _) => Task.CompletedTask, CancellationToken.None);
    }
}

/// <summary>
/// In-memory "network" to one <see cref="ReplicaServer"/>: each connect creates a pair of pipes and
/// runs a server connection on them. <see cref="Down"/> refuses connects; <see cref="Kill"/> drops
/// every live connection at once, as a crashed node would.
/// </summary>
internal sealed class PipeNetwork(ReplicaServer server, string name = "node-b") : IReplicaConnector
{
    private readonly Lock _lock = new();
    private readonly List<(CancellationTokenSource Cts, PipeTransport Transport, Task Serving)> _live = [];
    private int _connections;

    public string RemoteName { get; } = name;

    public bool Down { get; set; }

    public int Connects => Volatile.Read(ref _connections);

    public ValueTask<IReplicaTransport> ConnectAsync(CancellationToken cancellationToken)
    {
        if (Down)
        {
            throw new IOException("connection refused");
        }

        Interlocked.Increment(ref _connections);
        var options = new PipeOptions(useSynchronizationContext: false);
        var toServer = new Pipe(options);
        var toClient = new Pipe(options);
        var cts = new CancellationTokenSource();
        var transport = new PipeTransport(toClient.Reader, toServer.Writer);
        var serving = Task.Run(() => server.ServeAsync(new Duplex(toServer.Reader, toClient.Writer), "pipe", cts.Token), CancellationToken.None);
        lock (_lock)
        {
            _live.Add((cts, transport, serving));
        }

        return ValueTask.FromResult<IReplicaTransport>(transport);
    }

    /// <summary>Drops every live connection: the server side is cancelled, the client side sees its input end.</summary>
    public async Task KillAsync()
    {
        List<(CancellationTokenSource Cts, PipeTransport Transport, Task Serving)> live;
        lock (_lock)
        {
            live = [.. _live];
            _live.Clear();
        }

        // The client side goes first, as when a node dies: nothing more reaches the client.
        foreach (var (cts, transport, _) in live)
        {
            transport.Abort();
            await cts.CancelAsync();
        }

        foreach (var (cts, _, serving) in live)
        {
            await serving.WaitAsync(TimeSpan.FromSeconds(30));
            cts.Dispose();
        }
    }

    internal sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    private sealed class PipeTransport(PipeReader input, PipeWriter output) : IReplicaTransport
    {
        private int _aborted;

        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;

        public void Abort()
        {
            Volatile.Write(ref _aborted, 1);
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

/// <summary>A server, its network and a factory for client targets, all in memory.</summary>
internal sealed class PipeHarness : IAsyncDisposable
{
    public static readonly Guid Volume = Guid.Parse("0b7c1a7e-0000-4000-8000-000000000001");
    public static readonly Guid ServerNode = Guid.Parse("5e7e7000-0000-4000-8000-00000000000b");
    public static readonly Guid ClientNode = Guid.Parse("c1c1c100-0000-4000-8000-00000000000a");

    private readonly List<RemoteReplicaTarget> _targets = [];

    public PipeHarness(long size = 16 << 20, ReplicationOptions? serverOptions = null, long epoch = 1)
    {
        Probe = new ProbeTarget(size);
        Resolver = new TestResolver().Add(Volume, Probe, epoch);
        Server = new ReplicaServer(Resolver, serverOptions ?? new ReplicationOptions(), ServerNode, TimeProvider.System, NullLogger.Instance);
        Network = new PipeNetwork(Server);
    }

    public ProbeTarget Probe { get; }

    public TestResolver Resolver { get; }

    public ReplicaServer Server { get; }

    public PipeNetwork Network { get; }

    public ManualTimeProvider Time { get; } = new();

    public RemoteReplicaTarget Client(ReplicationOptions? options = null, long epoch = 1, Guid? volume = null)
    {
        var target = new RemoteReplicaTarget(volume ?? Volume, Probe.Size, epoch, Network, options ?? new ReplicationOptions(), ClientNode, Time, NullLogger.Instance);
        _targets.Add(target);
        return target;
    }

    public async ValueTask DisposeAsync()
    {
        Probe.OpenGate();
        foreach (var target in _targets)
        {
            await target.DisposeAsync();
        }

        await Network.KillAsync();
    }
}

internal static class TestData
{
    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
}

/// <summary>Raw protocol frames for peers that speak bytes (malformed-frame and TCP tests).</summary>
internal static class RawFrames
{
    /// <summary>A valid client hello offering <paramref name="minVersion"/>..<paramref name="maxVersion"/>.</summary>
    public static byte[] Hello(ushort minVersion = 1, ushort maxVersion = 1)
    {
        var hello = new byte[ReplicaProtocol.ClientHelloSize];
        new ClientHello(minVersion, maxVersion, PipeHarness.ClientNode).Write(hello);
        return hello;
    }

    /// <summary>A request header for <see cref="PipeHarness.Volume"/> at epoch 1, followed by <paramref name="payload"/>.</summary>
    public static byte[] Request(ReplicaOpcode opcode, long offset, byte[] payload, uint? length = null, ulong requestId = 1, ReplicaRequestFlags flags = ReplicaRequestFlags.None)
    {
        var frame = new byte[ReplicaProtocol.RequestHeaderSize + payload.Length];
        new RequestHeader(opcode, flags, requestId, PipeHarness.Volume, 1, (ulong)offset, length ?? (uint)payload.Length, payload.Length > 0 ? Crc32C.Compute(payload) : 0).Write(frame);
        payload.CopyTo(frame, ReplicaProtocol.RequestHeaderSize);
        return frame;
    }

    /// <summary>
    /// Reads <paramref name="count"/> responses (header, then its data) and returns them by request id:
    /// a server answers pipelined requests in any order. Fails on a bad header or a repeated id.
    /// </summary>
    public static async Task<Dictionary<ulong, RawResponse>> ReadResponsesAsync(Func<int, Task<byte[]>> readExact, int count)
    {
        var responses = new Dictionary<ulong, RawResponse>();
        for (var i = 0; i < count; i++)
        {
            var bytes = await readExact(ReplicaProtocol.ResponseHeaderSize);
            var header = ResponseHeader.TryParse(bytes, out var error)
                ?? throw new InvalidDataException($"response {i}: {error}");
            var data = header.Length > 0 ? await readExact((int)header.Length) : [];
            if (!responses.TryAdd(header.RequestId, new RawResponse(bytes, header.Status, data)))
            {
                throw new InvalidDataException($"request id {header.RequestId} answered twice");
            }
        }

        return responses;
    }
}

/// <summary>One response as received: the raw 28-byte header, its status and its data.</summary>
internal sealed record RawResponse(byte[] Header, ReplicaStatus Status, byte[] Data);
