using System.Collections.Immutable;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Slab.Api;
using Slab.Api.Cluster;
using Slab.Cluster.Node;
using Slab.Replication;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Hosting;

public static partial class SlabdHost
{
    /// <summary>
    /// Cluster mode: the cluster runtime (Raft member or client, gossip, reconciler), the replica
    /// server on the replication port, the peer API and remote volumes. Single-node mode adds nothing.
    /// </summary>
    private static void ConfigureClusterServices(IServiceCollection services, SlabdOptions options, NodeIdentity identity)
    {
        if (!options.Clustered)
        {
            return;
        }

        services.AddSingleton(new ClusterNodeOptions
        {
            ClusterId = options.ClusterId!,
            NodeId = identity.NodeId,
            NodeName = identity.NodeName,
            Advertise = IPAddress.Parse(options.AdvertiseAddress),
            ApiPort = options.ApiPort,
            ReplicationPort = options.ReplicationPort,
            RaftPort = options.RaftPort,
            GossipPort = options.GossipPort,
            Kvdb = options.Kvdb,
            Peers = options.Peers,
            Zone = options.Zone,
            Rack = options.Rack,
            Labels = options.Labels.ToImmutableSortedDictionary(StringComparer.Ordinal),
            DataDirectory = Path.Combine(options.DataDirectory, "cluster"),
            OvercommitRatio = options.OvercommitRatio,
        });
        services.AddSingleton<ClusterRuntime>();
        services.AddSingleton<PeerApi>();
        services.AddSingleton<ClusterVolumeOperations>();
        services.AddSingleton<ClusterVolumeSource>();
        services.AddSingleton<IReplicaResolver>(sp => sp.GetRequiredService<ClusterRuntime>().Replicas);
        services.AddReplicationServer(Guid.ParseExact(identity.NodeId, "N"));
        services.AddHostedService<ClusterNodeService>();
    }

    /// <summary>The volume, snapshot and attach APIs: cluster-wide in cluster mode, this node's alone otherwise.</summary>
    private static void MapApi(WebApplication app, SlabdOptions options)
    {
        app.MapGrpcService<IdentityService>();
        app.MapGrpcService<NodeService>();
        app.MapGrpcService<ClusterApiService>();
        if (options.Clustered)
        {
            app.MapGrpcService<ClusterVolumesService>();
            app.MapGrpcService<ClusterSnapshotsService>();
            app.MapGrpcService<ClusterMountAttachService>();
            app.MapGrpcService<NodeInternalService>();
        }
        else
        {
            app.MapGrpcService<VolumesService>();
            app.MapGrpcService<SnapshotsService>();
            app.MapGrpcService<MountAttachService>();
        }
    }
}

/// <summary>
/// Starts this node's part in the cluster before the API serves requests (hosted services start
/// before the web server): the cluster runtime, then the replica server on the replication port.
/// Stops them after the web server and after every attachment was undone.
/// </summary>
public sealed class ClusterNodeService(
    ClusterRuntime runtime,
    ClusterVolumeSource clusterVolumes,
    VolumeManager volumes,
    PeerApi peers,
    ReplicaServer replicaServer,
    Metrics.NodeListeners listeners,
    ILoggerFactory loggers) : IHostedService
{
    private ReplicaSocketListener? _replication;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Replicas opened from now on confirm higher epochs through the cluster state.
        volumes.Epochs = clusterVolumes;
        runtime.VolumeSource = clusterVolumes;
        await runtime.StartAsync(cancellationToken).ConfigureAwait(false);
        volumes.ClusterVolumes = clusterVolumes;
        _replication = new ReplicaSocketListener(runtime.Options.ReplicationEndPoint, replicaServer, loggers);
        try
        {
            _replication.Start();
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new Common.SlabException(
                Common.SlabErrorCode.FailedPrecondition, $"cannot listen for replication on tcp/{runtime.Options.ReplicationEndPoint}: {e.SocketErrorCode}", e);
        }

        listeners.Replication = _replication;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        listeners.Replication = null;
        if (_replication is not null)
        {
            await _replication.DisposeAsync().ConfigureAwait(false);
        }

        volumes.ClusterVolumes = null;
        await runtime.DisposeAsync().ConfigureAwait(false);
        peers.Dispose();
    }
}
