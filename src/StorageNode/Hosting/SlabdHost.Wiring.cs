using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Frontend.Nbd;
using Slab.Host;
using Slab.Volumes;

namespace Slab.Hosting;

public static partial class SlabdHost
{
    private static void ConfigureServices(IServiceCollection services, SlabdOptions options, Slab.Host.HostOptions hostAttach, IBlockDeviceAttacher attacher)
    {
        // Stale attachments were removed (or kept for adoption) before the store opened (RecoverAttachmentsAsync), by this attacher.
        services.AddHostAttach(hostAttach, recoverOnStart: false, attacher);
        services.AddSingleton(new NbdServerOptions());
        services.AddSingleton<Common.AlertClock>();
        services.AddSingleton<Cluster.Node.NodeAlerts>();
        services.AddSingleton<IExportCatalog>(sp => sp.GetRequiredService<VolumeManager>());
        services.AddSingleton(options);
        services.AddSingleton<Metrics.NodeListeners>();
        services.AddHostedService<NbdListenerService>();
    }

    /// <summary>The node's <c>/metrics</c> (<see cref="Metrics.NodeMetrics"/>) unless <c>--no-metrics</c>; its listener is configured with Kestrel's.</summary>
    private static void ConfigureMetrics(IServiceCollection services, SlabdOptions options, Store.NodeIdentity identity)
    {
        if (!options.Metrics)
        {
            return;
        }

        services.AddSingleton(new Metrics.MetricsOptions(identity.NodeId, identity.NodeName, Version));
        services.AddSingleton<Metrics.NodeMetrics>();
    }

    /// <summary>
    /// The Docker volume plugin when it is on: its socket claim, options, handler and start/stop
    /// service; null when off. In the default (on because /run/docker/plugins exists) a socket
    /// another slabd holds turns it off with a warning; asked for explicitly, that stops start-up.
    /// </summary>
    private static Api.Docker.DockerPluginOptions? ConfigureDockerPlugin(IServiceCollection services, SlabdOptions options, ILogger logger)
    {
        if (!options.DockerPluginEnabled)
        {
            return null;
        }

        Api.Docker.DockerPluginSocketLock socket;
        try
        {
            socket = Api.Docker.DockerPluginSocketLock.Acquire(options.DockerPluginSocketPath);
        }
        catch (Common.SlabException e) when (options.DockerPlugin is null)
        {
            LogDockerPluginSkipped(logger, e.Message);
            return null;
        }

        services.AddSingleton(socket);

        var docker = new Api.Docker.DockerPluginOptions
        {
            SocketPath = options.DockerPluginSocketPath,
            StateDirectory = Path.Combine(options.RunDirectory, "docker"),
            ApiSocketPath = options.ApiSocketPath,
        };
        services.AddSingleton(docker);
        services.AddSingleton(Api.Docker.DockerMountRegistry.Load(docker.MountIdFile));
        services.AddSingleton(_ => new Api.Docker.GrpcSlabVolumeApi(docker.ApiSocketPath)); // disposed with the host
        services.AddSingleton<Api.Docker.ISlabVolumeApi>(sp => sp.GetRequiredService<Api.Docker.GrpcSlabVolumeApi>());
        services.AddSingleton(sp => new Api.Docker.DockerPluginHandler(
            sp.GetRequiredService<Api.Docker.ISlabVolumeApi>(),
            sp.GetRequiredService<Api.Docker.DockerMountRegistry>(),
            docker,
            sp.GetRequiredService<ILogger<Api.Docker.DockerPluginHandler>>()));
        services.AddHostedService<Api.Docker.DockerPluginService>();
        return docker;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Docker volume plugin not started: {Reason}")]
    private static partial void LogDockerPluginSkipped(ILogger logger, string reason);

    /// <summary>Start-up recovery of attachments: undoes leftovers, returns those kept for adoption.</summary>
    private static async Task<IReadOnlyList<AttachedDevice>> RecoverAttachmentsAsync(IBlockDeviceAttacher attacher, ILogger logger)
    {
        var recovery = await attacher.RecoverAsync(CancellationToken.None).ConfigureAwait(false);
        foreach (var removal in recovery.Removed)
        {
            var actions = string.Join("; ", removal.Actions);
            LogStaleAttachment(logger, removal.VolumeName, removal.Complete, actions);
        }

        return recovery.Kept;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Attachments without the kernel NBD driver are fuse-loop (slabd's own FUSE file + loop) unless they must outlive slabd (keep attachments: {KeepAttachments}), which stay nbdfuse-loop")]
    private static partial void LogOwnFuseServer(ILogger logger, bool keepAttachments);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Removed stale attachment of volume {Volume} left by a crash (complete: {Complete}): {Actions}")]
    private static partial void LogStaleAttachment(ILogger logger, string volume, bool complete, string actions);
}

/// <summary>
/// Runs slabd's two NBD listeners: the public one (RUN/nbd.sock and TCP) over the volume catalog,
/// and the private attach socket over <see cref="AttachExportCatalog"/>; hands both to the metrics
/// (<see cref="Metrics.NodeListeners"/>) for their connection counts. Stopped after
/// <see cref="NodeShutdownService"/> has detached everything, so attachments unmount cleanly.
/// </summary>
public sealed class NbdListenerService(
    IExportCatalog volumes,
    AttachExportCatalog attachments,
    NbdServerOptions nbdOptions,
    SlabdOptions options,
    Metrics.NodeListeners listeners,
    TimeProvider time,
    ILoggerFactory loggers) : IHostedService
{
    private NbdSocketListener? _public;
    private NbdSocketListener? _attach;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _public = new NbdSocketListener(volumes, nbdOptions, time, loggers);
        _public.ListenUnix(options.NbdSocketPath);
        if (options.NbdPort > 0)
        {
            _public.ListenTcp(new IPEndPoint(IPAddress.Parse(options.ListenAddress), options.NbdPort));
        }

        _attach = new NbdSocketListener(attachments, nbdOptions, time, loggers);
        _attach.ListenUnix(options.AttachSocketPath);
        _public.Start();
        _attach.Start();
        listeners.Nbd = _public;
        listeners.Attach = _attach;
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        listeners.Nbd = null;
        listeners.Attach = null;
        if (_public is not null)
        {
            await _public.DisposeAsync().ConfigureAwait(false);
        }

        if (_attach is not null)
        {
            await _attach.DisposeAsync().ConfigureAwait(false);
        }
    }
}
