namespace Slab.Volumes;

/// <summary>
/// A token bucket that limits the bytes per second resync and rebuild copies take on one node
/// (shared by every controller there): a copy asks for its bytes before it reads them and waits when
/// the bucket is in debt. A burst of up to one second's worth passes at once.
/// </summary>
/// <remarks>Thread-safe; <see cref="BytesPerSecond"/> may change at any time and applies to the next request.</remarks>
public sealed class CopyThrottle(TimeProvider time)
{
    private readonly Lock _lock = new();
    private long _rate;
    private double _tokens;
    private long _last = time.GetTimestamp();

    /// <summary>The limit; 0 (the default) is unlimited.</summary>
    public long BytesPerSecond
    {
        get => Volatile.Read(ref _rate);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            lock (_lock)
            {
                if (_rate != value)
                {
                    _rate = value;
                    _tokens = Math.Min(_tokens, value);
                }
            }
        }
    }

    /// <summary>Takes <paramref name="bytes"/> from the bucket; completes when the rate allows them.</summary>
    public ValueTask AcquireAsync(long bytes, CancellationToken cancellationToken)
    {
        TimeSpan wait;
        lock (_lock)
        {
            var now = time.GetTimestamp();
            var elapsed = time.GetElapsedTime(_last, now).TotalSeconds;
            _last = now;
            if (_rate <= 0)
            {
                return ValueTask.CompletedTask;
            }

            _tokens = Math.Min(_rate, _tokens + (elapsed * _rate)) - bytes;
            if (_tokens >= 0)
            {
                return ValueTask.CompletedTask;
            }

            wait = TimeSpan.FromSeconds(-_tokens / _rate);
        }

        return new ValueTask(Task.Delay(wait, time, cancellationToken));
    }
}
