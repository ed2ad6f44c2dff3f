using Prometheus;
using Slab.Cluster.Node;
using Slab.Store;

namespace Slab.Metrics;

// Node-wide figures: identity, connections, the pool and its drives, the alerts slabctl status shows.
public sealed partial class NodeMetrics
{
    /// <summary>The (type, severity) pairs the alert gauge always shows, 0 when none is active, so a rule can match on them.</summary>
    private static readonly (AlertType Type, AlertSeverity Severity)[] PoolAlertKinds =
        [(AlertType.PoolFull, AlertSeverity.Critical), (AlertType.PoolNearFull, AlertSeverity.Warning)];

    private static readonly (AlertType Type, AlertSeverity Severity)[] ClusterAlertKinds =
    [
        (AlertType.ReplicaDegraded, AlertSeverity.Warning),
        (AlertType.ReplicaDegraded, AlertSeverity.Critical),
        (AlertType.SnapshotUnheld, AlertSeverity.Warning),
        (AlertType.NoQuorum, AlertSeverity.Critical),
    ];

    private readonly NodeFamilies _nodeMetrics;

    private PoolStatus CollectPool()
    {
        var families = _nodeMetrics;
        var pool = _store.GetPoolStatus();
        families.PoolCapacity[pool.Id].Set(pool.TotalBytes);
        families.PoolUsed[pool.Id].Set(pool.UsedBytes);
        families.PoolProvisioned[pool.Id].Set(pool.ProvisionedBytes);
        foreach (var drive in pool.Drives)
        {
            string[] labels = [pool.Id, drive.Id, drive.Path];
            families.DriveCapacity[labels].Set(drive.TotalBytes);
            families.DriveUsed[labels].Set(drive.UsedBytes);
            families.DriveOnline[labels].Set(drive.Online ? 1 : 0);
        }

        families.EndPoolRound();
        return pool;
    }

    private void CollectNode()
    {
        var families = _nodeMetrics;
        families.NbdConnections.WithLabels("public").Set(_listeners.Nbd?.ConnectionCount ?? 0);
        families.NbdConnections.WithLabels("attach").Set(_listeners.Attach?.ConnectionCount ?? 0);
    }

    /// <param name="pool">The pool status this round read (null when that failed: then the store is asked again).</param>
    private void CollectAlerts(PoolStatus? pool)
    {
        var counts = new Dictionary<(AlertType, AlertSeverity), int>();
        foreach (var kind in PoolAlertKinds)
        {
            counts[kind] = 0;
        }

        if (_cluster is not null)
        {
            foreach (var kind in ClusterAlertKinds)
            {
                counts[kind] = 0;
            }
        }

        foreach (var alert in pool is null ? _alerts.Current() : _alerts.Current(pool))
        {
            counts[(alert.Type, alert.Severity)] = counts.GetValueOrDefault((alert.Type, alert.Severity)) + 1;
        }

        foreach (var ((type, severity), count) in counts)
        {
            _nodeMetrics.Alerts[NodeAlert.LabelOf(type), NodeAlert.LabelOf(severity)].Set(count);
        }

        _nodeMetrics.Alerts.EndRound();
    }

    /// <summary>The node-wide metric families.</summary>
    private sealed class NodeFamilies
    {
        public NodeFamilies(IMetricFactory factory)
        {
            Info = factory.CreateGauge("slab_node_info", "Always 1: this slabd, its name, id and version.", ["node", "node_id", "version"]);
            NbdConnections = factory.CreateGauge(
                "slab_node_nbd_connections", "Open NBD connections, by listener: public (RUN/nbd.sock and the NBD TCP port) and attach (host attachments).", ["listener"]);
            string[] pool = ["pool"];
            string[] drive = ["pool", "drive", "path"];
            PoolCapacity = new(factory.CreateGauge("slab_pool_capacity_bytes", "Capacity of this node's pool: the sum of its drives' filesystems.", pool));
            PoolUsed = new(factory.CreateGauge("slab_pool_used_bytes", "Bytes used on this node's pool's drives.", pool));
            PoolProvisioned = new(factory.CreateGauge(
                "slab_pool_provisioned_bytes", "Thin-provisioned bytes: the sum of the sizes of the volumes (cluster: replicas) this node's pool holds.", pool));
            DriveCapacity = new(factory.CreateGauge("slab_drive_capacity_bytes", "Capacity of a drive's filesystem.", drive));
            DriveUsed = new(factory.CreateGauge("slab_drive_used_bytes", "Bytes used on a drive.", drive));
            DriveOnline = new(factory.CreateGauge("slab_drive_online", "1 when the drive is mounted and readable, else 0.", drive));
            Alerts = new(factory.CreateGauge(
                "slab_alerts", "Active alerts (those slabctl status shows), by type and severity.", ["type", "severity"]));
        }

        public Gauge Info { get; }

        public Gauge NbdConnections { get; }

        public ScrapedSeries<Gauge.Child> PoolCapacity { get; }

        public ScrapedSeries<Gauge.Child> PoolUsed { get; }

        public ScrapedSeries<Gauge.Child> PoolProvisioned { get; }

        public ScrapedSeries<Gauge.Child> DriveCapacity { get; }

        public ScrapedSeries<Gauge.Child> DriveUsed { get; }

        public ScrapedSeries<Gauge.Child> DriveOnline { get; }

        public ScrapedSeries<Gauge.Child> Alerts { get; }

        public void EndPoolRound()
        {
            PoolCapacity.EndRound();
            PoolUsed.EndRound();
            PoolProvisioned.EndRound();
            DriveCapacity.EndRound();
            DriveUsed.EndRound();
            DriveOnline.EndRound();
        }
    }
}
