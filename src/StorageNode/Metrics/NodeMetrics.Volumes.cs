using Prometheus;
using Slab.Volumes;

namespace Slab.Metrics;

// Per-volume figures: counters from each open controller's VolumeIoStats at scrape time, and the
// latency histograms, fed by the observers handed out through IVolumeIoObserverSource. A volume that
// is no longer open loses its series; one that opens again starts its counters at 0 (a new
// controller counts from its open; Prometheus takes the reset in its stride).
public sealed partial class NodeMetrics
{
    private static readonly string[] OpLabels = VolumeLatencyObserver.OpLabels;

    private readonly VolumeFamilies _volumeMetrics;

    /// <summary>The counters each volume was last collected from, by volume id: tells a reopened volume (new counters) from the same one.</summary>
    private readonly Dictionary<string, VolumeIoStats> _collectedStats = new(StringComparer.Ordinal);

    /// <summary>The latency observer each volume was last given, by volume id (under the observer lock).</summary>
    private readonly Dictionary<string, VolumeLatencyObserver> _observers = new(StringComparer.Ordinal);

    private long _observerSequence;

    /// <summary>
    /// The latency observer of a volume that opens: its histogram children are looked up once here,
    /// so <see cref="IIoLatencyObserver.Observe"/> does no label lookup and allocates nothing. A volume
    /// opened again gets new children (its histogram restarts with its counters).
    /// </summary>
    /// <remarks>Called by <see cref="VolumeManager"/> under its open lock; takes the observer lock (never the other way round).</remarks>
    public IIoLatencyObserver? ObserverFor(string volumeId, string volumeName)
    {
        lock (_observerLock)
        {
            if (_observers.Remove(volumeId, out var previous))
            {
                previous.RemoveSeries();
            }

            var observer = new VolumeLatencyObserver(_volumeMetrics.Duration, volumeName, volumeId, ++_observerSequence);
            _observers.Add(volumeId, observer);
            return observer;
        }
    }

    /// <param name="open">The controllers open now, read before the lock.</param>
    /// <param name="registered">The observer sequence read before <paramref name="open"/>: observers handed out later belong to volumes that may be opening now.</param>
    private void CollectVolumes(IReadOnlyList<VolumeController> open, long registered)
    {
        var families = _volumeMetrics;
        var openIds = new HashSet<string>(StringComparer.Ordinal);
        foreach (var controller in open)
        {
            openIds.Add(controller.VolumeId);
            string[] volume = [controller.VolumeName, controller.VolumeId];
            var stats = controller.Stats;
            if (_collectedStats.TryGetValue(controller.VolumeId, out var before) && !ReferenceEquals(before, stats))
            {
                // Reopened since the last scrape: its counters began again at 0.
                foreach (var op in OpLabels)
                {
                    families.Operations.Remove([.. volume, op]);
                    families.Bytes.Remove([.. volume, op]);
                    families.Errors.Remove([.. volume, op]);
                }

                families.Throttled.Remove(volume);
            }

            _collectedStats[controller.VolumeId] = stats;
            var snapshot = stats.Snapshot();
            SetTotals(families, volume, "read", snapshot.Reads, hasBytes: true);
            SetTotals(families, volume, "write", snapshot.Writes, hasBytes: true);
            SetTotals(families, volume, "flush", snapshot.Flushes, hasBytes: false);
            SetTotals(families, volume, "discard", snapshot.Discards, hasBytes: true);
            families.InFlight[volume].Set(snapshot.InFlight);
            families.Throttled[volume].IncTo(snapshot.Throttled.TotalSeconds);
            var limits = controller.Limits;
            SetLimit(families, volume, "read_iops", limits.ReadIops);
            SetLimit(families, volume, "write_iops", limits.WriteIops);
            SetLimit(families, volume, "read_bytes_per_second", limits.ReadBytesPerSecond);
            SetLimit(families, volume, "write_bytes_per_second", limits.WriteBytesPerSecond);
        }

        families.EndRound();
        foreach (var id in _collectedStats.Keys.Where(id => !openIds.Contains(id)).ToList())
        {
            _collectedStats.Remove(id);
        }

        foreach (var (id, observer) in _observers.Where(o => !openIds.Contains(o.Key) && o.Value.Sequence <= registered).ToList())
        {
            observer.RemoveSeries();
            _observers.Remove(id);
        }
    }

    private static void SetTotals(VolumeFamilies families, string[] volume, string op, IoTotals totals, bool hasBytes)
    {
        string[] labels = [.. volume, op];
        families.Operations[labels].IncTo(totals.Operations);
        families.Errors[labels].IncTo(totals.Errors);
        if (hasBytes)
        {
            families.Bytes[labels].IncTo(totals.Bytes);
        }
    }

    private static void SetLimit(VolumeFamilies families, string[] volume, string kind, long limit)
    {
        if (limit > 0)
        {
            families.Limits[[.. volume, kind]].Set(limit);
        }
    }

    /// <summary>The per-volume metric families.</summary>
    private sealed class VolumeFamilies
    {
        public VolumeFamilies(IMetricFactory factory)
        {
            string[] volume = ["volume", "volume_id"];
            string[] volumeOp = [.. volume, "op"];
            Operations = new(factory.CreateCounter(
                "slab_volume_operations_total", "Block operations completed on the volume (failed ones included) since it opened on this node, by op: read, write, flush, discard (trims and write-zeroes).", volumeOp));
            Bytes = new(factory.CreateCounter(
                "slab_volume_bytes_total", "Bytes read, written or discarded by the volume's successful operations since it opened on this node (flushes carry none).", volumeOp));
            Errors = new(factory.CreateCounter(
                "slab_volume_errors_total", "Block operations that failed on the volume since it opened on this node.", volumeOp));
            InFlight = new(factory.CreateGauge(
                "slab_volume_in_flight", "Block operations begun on the volume and not completed yet.", volume));
            Throttled = new(factory.CreateCounter(
                "slab_volume_qos_throttled_seconds_total", "Time the volume's requests waited for its QoS limits, summed over requests, since it opened on this node.", volume));
            Limits = new(factory.CreateGauge(
                "slab_volume_qos_limit", "The volume's QoS limit by kind: read_iops and write_iops (operations per second), read_bytes_per_second and write_bytes_per_second; only limits that are set.", [.. volume, "kind"]));
            Duration = VolumeLatencyObserver.CreateHistogram(factory);
        }

        public ScrapedSeries<Counter.Child> Operations { get; }

        public ScrapedSeries<Counter.Child> Bytes { get; }

        public ScrapedSeries<Counter.Child> Errors { get; }

        public ScrapedSeries<Gauge.Child> InFlight { get; }

        public ScrapedSeries<Counter.Child> Throttled { get; }

        public ScrapedSeries<Gauge.Child> Limits { get; }

        public Histogram Duration { get; }

        public void EndRound()
        {
            Operations.EndRound();
            Bytes.EndRound();
            Errors.EndRound();
            InFlight.EndRound();
            Throttled.EndRound();
            Limits.EndRound();
        }
    }
}
