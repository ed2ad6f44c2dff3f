using System.Runtime.InteropServices;

namespace Slab.Volumes;

/// <summary>The kinds of block operation a volume's statistics count apart.</summary>
public enum IoKind
{
    Read,
    Write,
    Flush,

    /// <summary>Trims and write-zeroes: they change data without carrying it.</summary>
    Discard,
}

/// <summary>Receives every completed operation's latency (a Prometheus histogram, for one); called on the I/O path, so it must not block or allocate.</summary>
public interface IIoLatencyObserver
{
    /// <summary>One operation of <paramref name="kind"/> took <paramref name="seconds"/> from arrival (before any QoS wait) to completion.</summary>
    void Observe(IoKind kind, double seconds);
}

/// <summary>Totals of one kind of operation since the statistics began.</summary>
/// <param name="Operations">Completed operations, failed ones included.</param>
/// <param name="Bytes">Bytes read or written by the successful ones (0 for flushes; the range for discards).</param>
/// <param name="Errors">Operations that failed.</param>
/// <param name="TotalLatency">Sum of the completed operations' latencies.</param>
public readonly record struct IoTotals(long Operations, long Bytes, long Errors, TimeSpan TotalLatency);

/// <summary>A volume's I/O counters at one moment: cumulative since <see cref="Since"/>, so rates come from two samples.</summary>
public sealed record VolumeIoSnapshot(
    DateTimeOffset SampledAt,
    DateTimeOffset Since,
    IoTotals Reads,
    IoTotals Writes,
    IoTotals Flushes,
    IoTotals Discards,
    long InFlight,
    TimeSpan Throttled);

/// <summary>
/// A volume's live I/O counters: operations, bytes, errors and latency per <see cref="IoKind"/>,
/// operations in flight, and the time QoS held requests back. Kept by the volume's controller from
/// its open (counters start at 0 there), read by <c>volume stats</c>, inspect and <c>/metrics</c>.
/// </summary>
/// <remarks>Thread-safe and allocation-free on the I/O path (a few interlocked adds per operation);
/// a snapshot is not atomic across counters (each is exact, their sum may be a request apart).
/// Latencies are measured with the given <see cref="TimeProvider"/>'s timestamps.</remarks>
public sealed class VolumeIoStats
{
    private readonly TimeProvider _time;
    private readonly KindCounters[] _kinds = new KindCounters[4];
    private long _inFlight;
    private long _throttledTicks;

    /// <param name="time">Clock of latencies and sample times.</param>
    /// <param name="observer">Also told every latency; null = none.</param>
    public VolumeIoStats(TimeProvider time, IIoLatencyObserver? observer = null)
    {
        _time = time;
        Observer = observer;
        Since = time.GetUtcNow();
    }

    /// <summary>When counting began (the controller's open).</summary>
    public DateTimeOffset Since { get; }

    public IIoLatencyObserver? Observer { get; }

    /// <summary>Operations begun and not completed yet.</summary>
    public long InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Marks an operation begun; returns its start timestamp for <see cref="End"/>.</summary>
    public long Begin()
    {
        Interlocked.Increment(ref _inFlight);
        return _time.GetTimestamp();
    }

    /// <summary>Marks an operation begun at <paramref name="started"/> completed: <paramref name="bytes"/> counted when it succeeded.</summary>
    public void End(IoKind kind, long bytes, long started, bool succeeded)
    {
        var elapsed = _time.GetTimestamp() - started;
        ref var counters = ref _kinds[(int)kind];
        Interlocked.Increment(ref counters.Operations);
        Interlocked.Add(ref counters.LatencyTicks, elapsed);
        if (succeeded)
        {
            Interlocked.Add(ref counters.Bytes, bytes);
        }
        else
        {
            Interlocked.Increment(ref counters.Errors);
        }

        Interlocked.Decrement(ref _inFlight);
        Observer?.Observe(kind, (double)elapsed / _time.TimestampFrequency);
    }

    /// <summary>Adds time a request waited for QoS, in timestamp ticks.</summary>
    public void AddThrottled(long ticks) => Interlocked.Add(ref _throttledTicks, ticks);

    /// <summary>The counters now.</summary>
    public VolumeIoSnapshot Snapshot() => new(
        _time.GetUtcNow(),
        Since,
        Totals(IoKind.Read),
        Totals(IoKind.Write),
        Totals(IoKind.Flush),
        Totals(IoKind.Discard),
        InFlight,
        Duration(Volatile.Read(ref _throttledTicks)));

    private IoTotals Totals(IoKind kind)
    {
        ref var counters = ref _kinds[(int)kind];
        return new IoTotals(
            Volatile.Read(ref counters.Operations),
            Volatile.Read(ref counters.Bytes),
            Volatile.Read(ref counters.Errors),
            Duration(Volatile.Read(ref counters.LatencyTicks)));
    }

    private TimeSpan Duration(long ticks) => TimeSpan.FromSeconds((double)ticks / _time.TimestampFrequency);

    /// <summary>One kind's counters, padded to a cache line of its own so kinds do not share one.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    private struct KindCounters
    {
        [FieldOffset(0)]
        public long Operations;

        [FieldOffset(8)]
        public long Bytes;

        [FieldOffset(16)]
        public long Errors;

        [FieldOffset(24)]
        public long LatencyTicks;
    }
}
