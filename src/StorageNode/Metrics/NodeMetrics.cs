using Microsoft.Extensions.Logging;
using Prometheus;
using Slab.Cluster.Node;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Metrics;

/// <summary>
/// This node's Prometheus metrics: one custom <see cref="CollectorRegistry"/> (never the static
/// default, so two hosts in one process do not mix) whose before-collect callback refreshes every
/// figure from snapshots at scrape time (<see cref="Collect"/>), plus the volumes' latency histograms,
/// fed on the I/O path through the observers this class hands out as the
/// <see cref="VolumeManager.IoObservers"/>. Partial: volumes, node and pool, cluster.
/// </summary>
/// <remarks>
/// <para>Threading: a scrape runs on the request's thread. Two locks: the round lock serializes
/// collection rounds (a slow <c>statfs</c> delays only other scrapes); the observer lock guards the
/// volumes' series and observers and is held only for in-memory work. <see cref="VolumeManager"/>
/// calls <see cref="ObserverFor"/> holding its open lock, and that takes the observer lock, so a
/// round calls into the volume manager before it takes the observer lock, never while holding it.
/// Nothing here blocks the data path: counters are read with <see cref="VolumeIoStats.Snapshot"/>,
/// and <see cref="IIoLatencyObserver.Observe"/> touches only a cached histogram child.</para>
/// <para>Besides slab's own metrics the registry carries prometheus-net's process and .NET runtime
/// metrics (<see cref="DotNetStats"/>: CPU seconds, resident and virtual memory, open file
/// descriptors, threads, GC collections and heap size): read from /proc and the GC at scrape time,
/// so they cost nothing in between. The EventCounter and Meter adapters are left out: they run
/// listeners all the time and would export every ASP.NET Core and Kestrel instrument.</para>
/// </remarks>
public sealed partial class NodeMetrics : IVolumeIoObserverSource
{
    /// <summary>The Prometheus text exposition format this endpoint serves.</summary>
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly MetricsOptions _options;
    private readonly VolumeManager _volumes;
    private readonly IVolumeStore _store;
    private readonly NodeAlerts _alerts;
    private readonly NodeListeners _listeners;
    private readonly ClusterRuntime? _cluster;
    private readonly ILogger<NodeMetrics> _logger;
    private readonly Lock _roundLock = new();
    private readonly Lock _observerLock = new();

    /// <param name="cluster">This node's cluster runtime; null on a single node (DI passes null when it is not registered).</param>
    public NodeMetrics(
        MetricsOptions options,
        VolumeManager volumes,
        IVolumeStore store,
        NodeAlerts alerts,
        NodeListeners listeners,
        ILogger<NodeMetrics> logger,
        ClusterRuntime? cluster = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _volumes = volumes;
        _store = store;
        _alerts = alerts;
        _listeners = listeners;
        _logger = logger;
        _cluster = cluster;
        Registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        // Exemplars would look up the current trace on every observation: none here.
        factory.ExemplarBehavior = ExemplarBehavior.NoExemplars();
        _volumeMetrics = new VolumeFamilies(factory);
        _nodeMetrics = new NodeFamilies(factory);
        _clusterMetrics = cluster is null ? null : new ClusterFamilies(factory);
        _nodeMetrics.Info.WithLabels(options.NodeName, options.NodeId, options.Version).Set(1);
        DotNetStats.Register(Registry);
        Registry.AddBeforeCollectCallback(Collect);
    }

    /// <summary>This host's registry (never <see cref="Prometheus.Metrics.DefaultRegistry"/>).</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Refreshes every figure, then writes the exposition (text format 0.0.4) to <paramref name="destination"/>.</summary>
    public Task ExportAsync(Stream destination, CancellationToken cancellationToken)
        => Registry.CollectAndExportAsTextAsync(destination, cancellationToken);

    /// <summary>
    /// One collection round, run by the registry before it serializes: every figure read from a
    /// snapshot, series that vanished removed. A part that fails is logged and skipped, so one
    /// unreadable source does not take the whole scrape down.
    /// </summary>
    private void Collect()
    {
        lock (_roundLock)
        {
            // Before the observer lock: VolumeManager takes its own (see the remarks).
            var registered = Volatile.Read(ref _observerSequence);
            var open = _volumes.OpenControllers();
            lock (_observerLock)
            {
                Guard("volumes", () => CollectVolumes(open, registered));
            }

            PoolStatus? pool = null;
            Guard("pool", () => pool = CollectPool());
            Guard("node", CollectNode);
            if (_cluster is not null)
            {
                Guard("cluster", () => CollectCluster(_cluster));
            }

            Guard("alerts", () => CollectAlerts(pool));
        }
    }

    private void Guard(string part, Action collect)
    {
        try
        {
            collect();
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException or Common.SlabException)
        {
            LogCollectFailed(_logger, part, e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "metrics: could not collect the {Part} figures: {Reason}")]
    private static partial void LogCollectFailed(ILogger logger, string part, string reason);
}
