using Prometheus;
using Slab.Volumes;

namespace Slab.Metrics;

/// <summary>
/// Feeds one open volume's latency histogram (<c>slab_volume_operation_duration_seconds</c>): its
/// four children (read, write, flush, discard) are looked up once, when the volume opens, so
/// <see cref="Observe"/> does no label lookup and allocates nothing.
/// </summary>
/// <remarks>Thread-safe: <see cref="Observe"/> runs on the I/O path, concurrently; it is an array index and prometheus-net's lock-free bucket update.</remarks>
internal sealed class VolumeLatencyObserver : IIoLatencyObserver
{
    /// <summary>The <c>op</c> label of each <see cref="IoKind"/>, by its value.</summary>
    public static readonly string[] OpLabels = ["read", "write", "flush", "discard"];

    /// <summary>Bucket bounds in seconds: 50 µs doubling to 3.3 s (17 buckets, then +Inf), which spans a cache hit to a stalled replica.</summary>
    public static readonly double[] LatencyBuckets = Histogram.ExponentialBuckets(50e-6, 2, 17);

    private readonly Histogram.Child[] _byKind;

    /// <param name="histogram">From <see cref="CreateHistogram"/>.</param>
    /// <param name="sequence">Order of creation (see <see cref="Sequence"/>).</param>
    public VolumeLatencyObserver(Histogram histogram, string volumeName, string volumeId, long sequence)
    {
        ArgumentNullException.ThrowIfNull(histogram);
        Sequence = sequence;
        _byKind = new Histogram.Child[OpLabels.Length];
        foreach (var kind in Enum.GetValues<IoKind>())
        {
            _byKind[(int)kind] = histogram.WithLabels(volumeName, volumeId, OpLabels[(int)kind]);
        }
    }

    /// <summary>Order of creation: tells an observer handed out during a scrape from older ones.</summary>
    public long Sequence { get; }

    /// <summary>The latency histogram family, labelled volume, volume_id, op.</summary>
    public static Histogram CreateHistogram(IMetricFactory factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        return factory.CreateHistogram(
            "slab_volume_operation_duration_seconds",
            "Latency of the volume's block operations, from arrival (before any QoS wait) to completion, by op.",
            ["volume", "volume_id", "op"],
            new HistogramConfiguration { Buckets = LatencyBuckets, ExemplarBehavior = ExemplarBehavior.NoExemplars() });
    }

    public void Observe(IoKind kind, double seconds) => _byKind[(int)kind].Observe(seconds);

    /// <summary>Removes this volume's series from the registry (observations after this are not exported).</summary>
    public void RemoveSeries()
    {
        foreach (var child in _byKind)
        {
            child.Remove();
        }
    }
}
