using Slab.Common;

namespace Slab.Metrics;

// The metrics layer: this node's /metrics in Prometheus text format (prometheus-net, one custom
// CollectorRegistry per slabd host), served by MetricsEndpoint on its own Kestrel listener. It sits
// beside Api and reads, at scrape time and as snapshots only:
//   Volumes: VolumeManager.OpenControllers() and each controller's VolumeIoStats.Snapshot() and
//            Limits; it is the VolumeManager's IVolumeIoObserverSource (the latency histograms).
//   Store:   IVolumeStore.GetPoolStatus() (pool and drive capacity, provisioned bytes).
//   Cluster: ClusterRuntime (the state's read copy, gossip liveness, leader, quorum, the Raft
//            member's commit and applied indexes), NodeAlerts (the alerts slabctl status shows),
//            VolumeHealthRules (up / degraded / down).
//   Common:  SocketConnectionListener.ConnectionCount of the NBD and replica listeners, handed
//            over by the host through NodeListeners.
// Nothing below (Volumes, Store, Cluster, Replication, Frontend, Block, ...) may reference it.

/// <summary>Who this node is, for <c>slab_node_info</c>.</summary>
/// <param name="NodeId">This node's id.</param>
/// <param name="NodeName">This node's name.</param>
/// <param name="Version">slabd's version.</param>
public sealed record MetricsOptions(string NodeId, string NodeName, string Version);

/// <summary>
/// The connection listeners whose counts <c>/metrics</c> reports. The host sets each one when it
/// starts listening and clears it when it stops; the metrics read them at scrape time.
/// </summary>
/// <remarks>Thread-safe: each property is a volatile reference.</remarks>
public sealed class NodeListeners
{
    private SocketConnectionListener? _nbd;
    private SocketConnectionListener? _attach;
    private SocketConnectionListener? _replication;

    /// <summary>The public NBD listener (RUN/nbd.sock and the NBD TCP port); null while not listening.</summary>
    public SocketConnectionListener? Nbd
    {
        get => Volatile.Read(ref _nbd);
        set => Volatile.Write(ref _nbd, value);
    }

    /// <summary>The private NBD listener host attachments use (RUN/attach.sock); null while not listening.</summary>
    public SocketConnectionListener? Attach
    {
        get => Volatile.Read(ref _attach);
        set => Volatile.Write(ref _attach, value);
    }

    /// <summary>The replica server's listener (cluster mode only); null otherwise.</summary>
    public SocketConnectionListener? Replication
    {
        get => Volatile.Read(ref _replication);
        set => Volatile.Write(ref _replication, value);
    }
}
