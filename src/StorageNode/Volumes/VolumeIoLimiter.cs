using Slab.Common;

namespace Slab.Volumes;

/// <summary>
/// Enforces one volume's <see cref="IoLimits"/>: four token buckets (read and write operations, read
/// and write bytes) in GCRA form. A request reserves its cost in every bucket that applies at once
/// and is told how long to wait before it may start (0 = now); nothing sleeps and nothing queues here
/// (the caller awaits a timer; the NBD session's slot pool bounds how many wait).
/// </summary>
/// <remarks>
/// <para>Each bucket keeps a theoretical arrival time (TAT, timestamp ticks): a request of cost c at
/// rate r moves it by c/r seconds; it may start when TAT − burst ≤ now. So a volume idle for a while
/// may run a burst of <see cref="Burst"/>'s worth at full speed (bounded: idle time does not pile
/// up), and over any longer interval it gets its rate.</para>
/// <para>Thread-safe and allocation-free (compare-and-swap per bucket). Immutable limits: a change
/// makes a new limiter (reservations start afresh).</para>
/// </remarks>
public sealed class VolumeIoLimiter
{
    /// <summary>How much a bucket lets pass at once after being idle: this long at its rate.</summary>
    public static readonly TimeSpan Burst = TimeSpan.FromMilliseconds(50);

    private readonly TimeProvider _time;
    private readonly long _burstTicks;
    private Bucket _readOps;
    private Bucket _writeOps;
    private Bucket _readBytes;
    private Bucket _writeBytes;

    public VolumeIoLimiter(IoLimits limits, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(limits);
        Limits = limits;
        _time = time;
        var frequency = time.TimestampFrequency;
        _burstTicks = (long)(Burst.TotalSeconds * frequency);
        var now = time.GetTimestamp();
        _readOps = new Bucket(limits.ReadIops, frequency, now);
        _writeOps = new Bucket(limits.WriteIops, frequency, now);
        _readBytes = new Bucket(limits.ReadBytesPerSecond, frequency, now);
        _writeBytes = new Bucket(limits.WriteBytesPerSecond, frequency, now);
    }

    public IoLimits Limits { get; }

    /// <summary>Reserves one operation carrying <paramref name="bytes"/> (0 for discards); returns the ticks to wait before it starts, 0 for none.</summary>
    public long Reserve(bool isWrite, long bytes)
    {
        var now = _time.GetTimestamp();
        long wait;
        if (isWrite)
        {
            wait = _writeOps.Reserve(1, now, _burstTicks);
            if (bytes > 0)
            {
                wait = Math.Max(wait, _writeBytes.Reserve(bytes, now, _burstTicks));
            }
        }
        else
        {
            wait = _readOps.Reserve(1, now, _burstTicks);
            wait = Math.Max(wait, _readBytes.Reserve(bytes, now, _burstTicks));
        }

        return wait;
    }

    private struct Bucket(long rate, long frequency, long now)
    {
        private readonly long _rate = rate;
        private readonly long _frequency = frequency;
        private long _tat = now;

        /// <summary>Moves the TAT by <paramref name="cost"/>; the wait is how far the old TAT (at least now) is beyond now + burst.</summary>
        public long Reserve(long cost, long now, long burstTicks)
        {
            if (_rate == 0)
            {
                return 0;
            }

            var increment = (long)((Int128)cost * _frequency / _rate);
            while (true)
            {
                var tat = Volatile.Read(ref _tat);
                var start = Math.Max(tat, now);
                if (Interlocked.CompareExchange(ref _tat, start + increment, tat) == tat)
                {
                    return Math.Max(0, start - burstTicks - now);
                }
            }
        }
    }
}
