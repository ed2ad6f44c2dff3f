using System.Runtime.CompilerServices;
using Slab.Block;
using Slab.Common;

namespace Slab.Volumes;

/// <summary>What a controller's I/O accounting and QoS use.</summary>
/// <param name="Time">Clock of latencies and of the QoS buckets (tests inject their own).</param>
/// <param name="Limits">The volume's QoS limits when it opens; <see cref="VolumeController.SetLimits"/> changes them.</param>
/// <param name="LatencyObserver">Also told every operation's latency (the node's metrics); null = none.</param>
public sealed record VolumeIoSettings(TimeProvider Time, IoLimits Limits, IIoLatencyObserver? LatencyObserver = null)
{
    /// <summary>The QoS buckets' burst (<see cref="VolumeIoLimiter.Burst"/>); default <see cref="VolumeIoLimiter.DefaultBurst"/>.</summary>
    public TimeSpan QosBurst { get; init; } = VolumeIoLimiter.DefaultBurst;

    /// <summary>System clock, no limits, no observer.</summary>
    public static VolumeIoSettings Default { get; } = new(TimeProvider.System, IoLimits.None);
}

// The controller's front door: every block operation is counted (VolumeIoStats) and, when the volume
// has limits, admitted by its VolumeIoLimiter before it reaches the replica set. An operation that
// must wait awaits a timer (no thread sleeps); its latency includes the wait.
public sealed partial class VolumeController
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _qosBurst;
    private VolumeIoLimiter? _limiter;

    /// <summary>This controller's I/O counters since it opened.</summary>
    public VolumeIoStats Stats { get; }

    /// <summary>The QoS limits enforced now.</summary>
    public IoLimits Limits => Volatile.Read(ref _limiter)?.Limits ?? IoLimits.None;

    /// <summary>Changes the QoS limits online; applies to requests that arrive from now on.</summary>
    public void SetLimits(IoLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        Volatile.Write(ref _limiter, limits.IsUnlimited ? null : new VolumeIoLimiter(limits, _time, _qosBurst));
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var started = Stats.Begin();
        if (Volatile.Read(ref _limiter) is { } limiter && limiter.Reserve(isWrite: false, destination.Length) is var wait and > 0)
        {
            return ThrottledReadAsync(offset, destination, wait, started, cancellationToken);
        }

        ValueTask pending;
        try
        {
            pending = ReadCoreAsync(offset, destination, cancellationToken);
        }
        catch
        {
            Stats.End(IoKind.Read, 0, started, succeeded: false);
            throw;
        }

        return Completed(pending, IoKind.Read, destination.Length, started);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        var started = Stats.Begin();
        if (Volatile.Read(ref _limiter) is { } limiter && limiter.Reserve(isWrite: true, source.Length) is var wait and > 0)
        {
            return ThrottledWriteAsync(new WriteOperation(offset, source, flags), IoKind.Write, source.Length, wait, started, cancellationToken);
        }

        ValueTask pending;
        try
        {
            pending = WriteCoreAsync(offset, source, flags, cancellationToken);
        }
        catch
        {
            Stats.End(IoKind.Write, 0, started, succeeded: false);
            throw;
        }

        return Completed(pending, IoKind.Write, source.Length, started);
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
        => Discard(new TrimOperation(offset, length), cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
        => Discard(new WriteZeroesOperation(offset, length, flags), cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        var started = Stats.Begin();
        ValueTask pending;
        try
        {
            pending = Dispatch(default(FlushOperation), cancellationToken);
        }
        catch
        {
            Stats.End(IoKind.Flush, 0, started, succeeded: false);
            throw;
        }

        return Completed(pending, IoKind.Flush, 0, started);
    }

    private ValueTask Discard<TOperation>(TOperation operation, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        var started = Stats.Begin();
        if (Volatile.Read(ref _limiter) is { } limiter && limiter.Reserve(isWrite: true, bytes: 0) is var wait and > 0)
        {
            return ThrottledWriteAsync(operation, IoKind.Discard, operation.Length, wait, started, cancellationToken);
        }

        ValueTask pending;
        try
        {
            pending = GatedAsync(operation, cancellationToken);
        }
        catch
        {
            Stats.End(IoKind.Discard, 0, started, succeeded: false);
            throw;
        }

        return Completed(pending, IoKind.Discard, operation.Length, started);
    }

    /// <summary>Counts an operation that was started: at once when it completed synchronously, else when it does.</summary>
    private ValueTask Completed(ValueTask pending, IoKind kind, long bytes, long started)
    {
        if (pending.IsCompletedSuccessfully)
        {
            // Take the result: a value task backed by a pooled source is recycled only then.
            pending.GetAwaiter().GetResult();
            Stats.End(kind, bytes, started, succeeded: true);
            return ValueTask.CompletedTask;
        }

        return CompletedAsync(pending, kind, bytes, started);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CompletedAsync(ValueTask pending, IoKind kind, long bytes, long started)
    {
        var succeeded = false;
        try
        {
            await pending.ConfigureAwait(false);
            succeeded = true;
        }
        finally
        {
            Stats.End(kind, bytes, started, succeeded);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ThrottledReadAsync(long offset, Memory<byte> destination, long wait, long started, CancellationToken cancellationToken)
    {
        var succeeded = false;
        try
        {
            await WaitForLimiterAsync(wait, cancellationToken).ConfigureAwait(false);
            await ReadCoreAsync(offset, destination, cancellationToken).ConfigureAwait(false);
            succeeded = true;
        }
        finally
        {
            Stats.End(IoKind.Read, destination.Length, started, succeeded);
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ThrottledWriteAsync<TOperation>(TOperation operation, IoKind kind, long bytes, long wait, long started, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        var succeeded = false;
        try
        {
            await WaitForLimiterAsync(wait, cancellationToken).ConfigureAwait(false);
            await GatedAsync(operation, cancellationToken).ConfigureAwait(false);
            succeeded = true;
        }
        finally
        {
            Stats.End(kind, bytes, started, succeeded);
        }
    }

    private Task WaitForLimiterAsync(long ticks, CancellationToken cancellationToken)
    {
        Stats.AddThrottled(ticks);
        return Task.Delay(TimeSpan.FromSeconds((double)ticks / _time.TimestampFrequency), _time, cancellationToken);
    }
}
