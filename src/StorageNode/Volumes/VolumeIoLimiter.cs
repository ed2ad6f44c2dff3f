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
/// up), and over any longer interval it gets its rate. The burst is also what a volume may make up
/// after a stall below it (the device or the node stopped it, not the bucket): with the default of
/// one second's worth (as <see cref="CopyThrottle"/> and a classic token bucket of one second), a
/// volume held back by a half-second stall of the disk still gets its rate over the next seconds,
/// where a shorter burst forgives the lost time and it falls short of its limit.</para>
/// <para>Thread-safe and allocation-free (compare-and-swap per bucket). Immutable limits: a change
/// makes a new limiter (reservations start afresh).</para>
/// </remarks>
public sealed class VolumeIoLimiter
{
    /// <summary>The default <see cref="Burst"/>: one second at the bucket's rate.</summary>
    public static readonly TimeSpan DefaultBurst = TimeSpan.FromSeconds(1);

    private readonly TimeProvider _time;
    private readonly long _burstTicks;
    private Bucket _readOps;
    private Bucket _writeOps;
    private Bucket _readBytes;
    private Bucket _writeBytes;

    /// <param name="limits">The limits to enforce.</param>
    /// <param name="time">Clock of the buckets.</param>
    /// <param name="burst">How much a bucket lets pass at once after being idle: this long at its rate (0 or more).</param>
    public VolumeIoLimiter(IoLimits limits, TimeProvider time, TimeSpan burst)
    {
        ArgumentNullException.ThrowIfNull(limits);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, TimeSpan.Zero);
        Limits = limits;
        Burst = burst;
        _time = time;
        var frequency = time.TimestampFrequency;
        _burstTicks = (long)(burst.TotalSeconds * frequency);
        var now = time.GetTimestamp();
        _readOps = new Bucket(limits.ReadIops, frequency, now);
        _writeOps = new Bucket(limits.WriteIops, frequency, now);
        _readBytes = new Bucket(limits.ReadBytesPerSecond, frequency, now);
        _writeBytes = new Bucket(limits.WriteBytesPerSecond, frequency, now);
    }

    public IoLimits Limits { get; }

    /// <summary>How much a bucket lets pass at once after being idle, as time at its rate.</summary>
    public TimeSpan Burst { get; }

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
