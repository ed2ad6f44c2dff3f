using System.Collections.Concurrent;

namespace Slab.Common;

/// <summary>
/// Remembers when each node-local alert condition began, so an alert shows when its condition
/// started rather than when it was asked for. A condition seen inactive is forgotten.
/// </summary>
/// <remarks>Thread-safe; one per process. Times are as good as the polling: a condition is dated from the first status request that saw it.</remarks>
public sealed class AlertClock(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, DateTimeOffset> _since = new(StringComparer.Ordinal);

    /// <summary>When the condition <paramref name="key"/> became active (now, the first time it is seen).</summary>
    public DateTimeOffset ActiveSince(string key) => _since.GetOrAdd(key, _ => time.GetUtcNow());

    /// <summary>The condition <paramref name="key"/> is not active (any more).</summary>
    public void Inactive(string key) => _since.TryRemove(key, out _);
}
