using System.Threading.Channels;
using Slab.Block;

namespace Slab.Tests.Nbd;

/// <summary>
/// A block target for NBD tests: delegates to a <see cref="MemoryBlockTarget"/>, counts calls, and can
/// hold reads at a gate, throw chosen failures, or advertise other features.
/// </summary>
internal sealed class TestTarget(long size, bool readOnly = false) : IBlockTarget
{
    private readonly MemoryBlockTarget _inner = new(size, readOnly);
    private int _calls;
    private int _running;
    private int _maxRunning;

    public MemoryBlockTarget Inner => _inner;

    public long Size => _inner.Size;

    public BlockTargetFeatures? FeaturesOverride { get; set; }

    public BlockTargetFeatures Features => FeaturesOverride ?? _inner.Features;

    public BlockGeometry Geometry => _inner.Geometry;

    /// <summary>Target calls started.</summary>
    public int Calls => Volatile.Read(ref _calls);

    /// <summary>Most calls ever running at once.</summary>
    public int MaxRunning => Volatile.Read(ref _maxRunning);

    /// <summary>When set, a read of this offset waits for <see cref="Gate"/>.</summary>
    public long? GatedReadOffset { get; set; }

    /// <summary>When true, every read waits for a permit of <see cref="Permits"/>.</summary>
    public bool ReadsNeedPermit { get; set; }

    public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public SemaphoreSlim Permits { get; } = new(0);

    /// <summary>Offsets of reads as they start (for tests that wait for a request to reach the target).</summary>
    public Channel<long> ReadsStarted { get; } = Channel.CreateUnbounded<long>();

    /// <summary>Thrown by the next writes instead of writing.</summary>
    public Exception? WriteFailure { get; set; }

    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        Enter();
        try
        {
            ReadsStarted.Writer.TryWrite(offset);
            if (GatedReadOffset == offset)
            {
                await Gate.Task;
            }

            if (ReadsNeedPermit)
            {
                await Permits.WaitAsync(cancellationToken);
            }

            await _inner.ReadAsync(offset, destination, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _running);
        }
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        Enter();
        Interlocked.Decrement(ref _running);
        if (WriteFailure is { } failure)
        {
            throw failure;
        }

        return _inner.WriteAsync(offset, source, flags, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        return _inner.FlushAsync(cancellationToken);
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        return _inner.TrimAsync(offset, length, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        return _inner.WriteZeroesAsync(offset, length, flags, cancellationToken);
    }

    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        return _inner.GetExtentsAsync(offset, length, destination, cancellationToken);
    }

    private void Enter()
    {
        Interlocked.Increment(ref _calls);
        var running = Interlocked.Increment(ref _running);
        int max;
        while (running > (max = Volatile.Read(ref _maxRunning)) && Interlocked.CompareExchange(ref _maxRunning, running, max) != max)
        {
        }
    }
}

/// <summary>A TimeProvider whose timers fire only when the test says so.</summary>
internal sealed class ManualTimeProvider : TimeProvider
{
    private readonly List<ManualTimer> _timers = [];
    private readonly Lock _lock = new();

    public int TimerCount
    {
        get
        {
            lock (_lock)
            {
                return _timers.Count;
            }
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = new ManualTimer(callback, state);
        lock (_lock)
        {
            _timers.Add(timer);
        }

        return timer;
    }

    /// <summary>Fires every live timer once (as if all their due times had passed).</summary>
    public void FireAll()
    {
        ManualTimer[] timers;
        lock (_lock)
        {
            timers = [.. _timers];
        }

        foreach (var timer in timers)
        {
            timer.Fire();
        }
    }

    private sealed class ManualTimer(TimerCallback callback, object? state) : ITimer
    {
        private bool _disposed;

        public void Fire()
        {
            if (!_disposed)
            {
                callback(state);
            }
        }

        public bool Change(TimeSpan dueTime, TimeSpan period) => !_disposed;

        public void Dispose() => _disposed = true;

        public ValueTask DisposeAsync()
        {
            _disposed = true;
            return ValueTask.CompletedTask;
        }
    }
}
