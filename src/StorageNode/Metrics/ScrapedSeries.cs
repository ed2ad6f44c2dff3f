using Prometheus;

namespace Slab.Metrics;

/// <summary>
/// The series (label sets) of one metric that are set afresh on every scrape: those set during a
/// round are kept, those not set any more (a closed volume, a removed drive, a new leader) are
/// removed at its end, so series do not pile up.
/// </summary>
/// <remarks>Not thread-safe: used only inside <see cref="NodeMetrics"/>'s collection round. Allocates at scrape time only.</remarks>
internal sealed class ScrapedSeries<TChild>(Collector<TChild> collector)
    where TChild : ChildBase
{
    private const char Separator = '\u001f';
    private Dictionary<string, string[]> _previous = new(StringComparer.Ordinal);
    private Dictionary<string, string[]> _current = new(StringComparer.Ordinal);

    /// <summary>The series with these label values, kept this round.</summary>
    public TChild this[params string[] labelValues]
    {
        get
        {
            _current.TryAdd(string.Join(Separator, labelValues), labelValues);
            return collector.WithLabels(labelValues);
        }
    }

    /// <summary>Drops the series at once (a counter that must restart from 0); the indexer makes it anew on its next use.</summary>
    public void Remove(params string[] labelValues)
    {
        var key = string.Join(Separator, labelValues);
        _previous.Remove(key);
        _current.Remove(key);
        collector.RemoveLabelled(labelValues);
    }

    /// <summary>Ends a round: removes the series set in the previous round and not in this one.</summary>
    public void EndRound()
    {
        foreach (var (key, labelValues) in _previous)
        {
            if (!_current.ContainsKey(key))
            {
                collector.RemoveLabelled(labelValues);
            }
        }

        (_previous, _current) = (_current, _previous);
        _current.Clear();
    }
}
