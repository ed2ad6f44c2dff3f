using System.Net;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Slab.Api;
using Slab.Api.Docker;
using Slab.Common;
using Slab.Metrics;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Hosting;

/// <summary>
/// Builds and runs the daemon: options → run-directory lock → node identity → stale attachments
/// removed → drives prepared and volumes recovered → gRPC and NBD listeners → wait for SIGTERM/SIGINT
/// → detach, close exports, flush and close volumes, unmount drives.
/// </summary>
public static partial class SlabdHost
{
    public static string Version { get; } =
        typeof(SlabdHost).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public static async Task<int> RunAsync(string[] args)
    {
        SlabdOptions options;
        try
        {
            options = SlabdOptions.Parse(args);
        }
        catch (FormatException ex)
        {
            await Console.Error.WriteLineAsync($"slabd: {ex.Message}\n\n{SlabdOptions.Usage}").ConfigureAwait(false);
            return 2;
        }

        if (options.ShowHelp)
        {
            await Console.Out.WriteLineAsync(SlabdOptions.Usage).ConfigureAwait(false);
            return 0;
        }

        if (Tmds.Linux.LibC.geteuid() != 0)
        {
            await Console.Error.WriteLineAsync("slabd: must run as root: it formats and mounts drives and attaches block devices").ConfigureAwait(false);
            return 1;
        }

        try
        {
            return await RunValidatedAsync(options).ConfigureAwait(false);
        }
        catch (SlabException ex)
        {
            await Console.Error.WriteLineAsync($"slabd: {ex.Message}").ConfigureAwait(false);
            return 1;
        }
    }

    private static async Task<int> RunValidatedAsync(SlabdOptions options)
    {
        // Sockets, metadata and attachments are root's alone.
        _ = Tmds.Linux.LibC.umask(0b000_111_111);
        // Replica I/O blocks a pool thread for the syscall; keep enough threads ready for deep queues.
        ThreadPool.GetMinThreads(out var workers, out var completion);
        ThreadPool.SetMinThreads(Math.Max(workers, 128), completion);

        Directory.CreateDirectory(options.DataDirectory);
        Directory.CreateDirectory(options.RunDirectory);
        using var runLock = RunDirectoryLock.Acquire(options.RunDirectory);
        var identity = NodeIdentityStore.LoadOrCreate(options.DataDirectory, options.NodeName);
        if (options.Dev)
        {
            EnsureDevDrive(options);
        }

        // Start-up work before the host exists (crash cleanup, opening the store) logs like the host does.
        using var startupLoggers = LoggerFactory.Create(logging => ConfigureLogging(logging, options));
        var logger = startupLoggers.CreateLogger("slabd");
        var hostAttach = new Slab.Host.HostOptions(options.RunDirectory, options.AttachPreference)
        {
            ReconnectTimeout = options.KeepAttachments ? SlabdOptions.KeptAttachmentReconnectTimeout : null,
        };
        var attacher = Slab.Host.HostAttachFactory.Create(hostAttach, startupLoggers);
        var survivors = await RecoverAttachmentsAsync(attacher, logger).ConfigureAwait(false);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        ConfigureLogging(builder.Logging, options);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromMinutes(2));
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddGrpc(o => o.Interceptors.Add<ErrorMappingInterceptor>());
        ConfigureServices(builder.Services, options, hostAttach, attacher);

        // The store opens before the listeners exist, so no client ever sees a half-recovered node.
        var storeOptions = new StoreOptions
        {
            DataDirectory = options.DataDirectory,
            RunDirectory = options.RunDirectory,
            DrivePaths = options.Drives,
            WipeDrives = options.WipeDrives,
            OvercommitRatio = options.OvercommitRatio,
            MeasurePool = !options.SkipPoolBenchmark,
        };
        var store = await VolumeStore.OpenAsync(storeOptions, identity, logger, CancellationToken.None).ConfigureAwait(false);
        await using (store.ConfigureAwait(false))
        {
            var pool = store.GetPoolStatus();
            var node = new LocalNodeIdentity(
                identity.NodeId,
                identity.NodeName,
                pool.Id,
                ClusterId: options.ClusterId ?? identity.NodeId,
                Version,
                options.NbdSocketPath,
                options.NbdPort > 0 ? $"{options.ListenAddress}:{options.NbdPort}" : "");
            builder.Services.AddSingleton<IVolumeStore>(store);
            builder.Services.AddSingleton(node);
            builder.Services.AddSingleton(new VolumeManagerOptions
            {
                NodeId = identity.NodeId,
                NodeName = identity.NodeName,
                AttachSocketPath = options.AttachSocketPath,
                KeepAttachments = options.KeepAttachments,
            });
            builder.Services.AddSingleton<VolumeManager>();
            builder.Services.AddSingleton<AttachExportCatalog>();
            builder.Services.AddHostedService<NodeShutdownService>();
            ConfigureClusterServices(builder.Services, options, identity);
            var docker = ConfigureDockerPlugin(builder.Services, options, logger);
            ConfigureMetrics(builder.Services, options, identity);
            var metricsListener = ConfigureListeners(builder, options, docker);

            var app = builder.Build();
            if (docker is not null)
            {
                app.MapDockerPlugin(docker);
            }

            if (metricsListener is not null)
            {
                app.MapMetrics();
            }

            MapApi(app, options);

            var volumes = app.Services.GetRequiredService<VolumeManager>();
            // Before anything opens a volume (the cluster runtime's resyncs start with the host).
            volumes.IoObservers = app.Services.GetService<NodeMetrics>();
            if (options.OwnFuseServer && attacher is Slab.Host.NbdFuseLoopAttacher fuseAttacher)
            {
                fuseAttacher.FileServer = new Slab.Frontend.Fuse.FuseAttachFileServer(
                    app.Services.GetRequiredService<AttachExportCatalog>(), new Slab.Frontend.Fuse.FuseFileServerOptions(), app.Services.GetRequiredService<ILoggerFactory>());
                LogOwnFuseServer(logger, options.KeepAttachments);
            }

            volumes.OfferSurvivors(survivors);
            if (!options.Clustered)
            {
                // Alone, the store says all there is to know; in a cluster the reconciler adopts them
                // once it knows who holds each volume now.
                await volumes.AdoptSurvivorsAsync(refusal: null, CancellationToken.None).ConfigureAwait(false);
            }

            await StartAsync(app).ConfigureAwait(false);
            if (metricsListener?.IPEndPoint is { } metricsEndPoint)
            {
                MetricsEndpoint.LogServing(logger, metricsEndPoint);
            }

            var volumeCount = store.ListVolumes().Count;
            LogReady(logger, identity.NodeName, identity.NodeId, volumeCount, options.ApiSocketPath, options.NbdSocketPath);
            await app.WaitForShutdownAsync().ConfigureAwait(false);

            await volumes.CloseAllAsync(CancellationToken.None).ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
            LogStopped(logger);
        }

        return 0;
    }

    private static void ConfigureLogging(ILoggingBuilder logging, SlabdOptions options)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        logging.SetMinimumLevel(Enum.Parse<LogLevel>(options.LogLevel));
        logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        logging.AddFilter("Grpc", LogLevel.Warning);
    }

    /// <summary>
    /// Kestrel's listeners: the API (unix socket, TCP), the Docker plugin's socket, the metrics port.
    /// Returns where the metrics listener will be known (Kestrel runs this configuration when the
    /// server starts, so its bound port, for <c>--metrics-port 0</c>, is there once the host has
    /// started); null without metrics.
    /// </summary>
    private static MetricsListener? ConfigureListeners(WebApplicationBuilder builder, SlabdOptions options, Api.Docker.DockerPluginOptions? docker)
    {
        foreach (var socket in new[] { options.ApiSocketPath, options.NbdSocketPath, options.AttachSocketPath })
        {
            // We hold the run-directory lock, so any socket file here is left over from a crash.
            File.Delete(socket);
        }

        var metrics = options.Metrics ? new MetricsListener() : null;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = 4 * 1024 * 1024;
            kestrel.ListenUnixSocket(options.ApiSocketPath, l => l.Protocols = HttpProtocols.Http2);
            if (docker is not null)
            {
                kestrel.ListenUnixSocket(docker.SocketPath, DockerPluginEndpoint.ConfigureListener);
            }

            if (options.ApiPort > 0)
            {
                kestrel.Listen(ParseAddress(options.ListenAddress), options.ApiPort, l => l.Protocols = HttpProtocols.Http2);
            }

            if (metrics is not null)
            {
                kestrel.Listen(ParseAddress(options.ListenAddress), options.MetricsPort, l =>
                {
                    MetricsEndpoint.ConfigureListener(l);
                    metrics.Options = l;
                });
            }
        });
        return metrics;
    }

    /// <summary>Starts the host; a port another process holds is a clear refusal, not a stack trace.</summary>
    private static async Task StartAsync(WebApplication app)
    {
        try
        {
            await app.StartAsync().ConfigureAwait(false);
        }
        catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException or System.Net.Sockets.SocketException)
        {
            throw new SlabException(
                SlabErrorCode.FailedPrecondition,
                $"cannot listen: {e.Message} Another process (or another slabd) holds that port: give this one other ports (--api-port, --metrics-port, or --port-base in cluster mode), or --no-metrics",
                e);
        }
    }

    /// <summary>The metrics port's Kestrel listener, once Kestrel configured it.</summary>
    private sealed class MetricsListener
    {
        public ListenOptions? Options { get; set; }

        /// <summary>The address and port bound (the real port when 0 was asked for); null before the server started.</summary>
        public IPEndPoint? IPEndPoint => Options?.IPEndPoint;
    }

    private static IPAddress ParseAddress(string address)
        => IPAddress.TryParse(address, out var ip)
            ? ip
            : throw new SlabException(SlabErrorCode.InvalidArgument, $"--listen-address '{address}' is not an IP address");

    private static void EnsureDevDrive(SlabdOptions options)
    {
        foreach (var drive in options.Drives)
        {
            if (drive == options.DevDrivePath && !File.Exists(drive))
            {
                using var file = new FileStream(drive, FileMode.CreateNew, FileAccess.Write);
                file.SetLength(SlabdOptions.DevDriveBytes);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "slabd ready: node {NodeName} ({NodeId}), {Volumes} volumes, API {ApiSocket}, NBD {NbdSocket}")]
    private static partial void LogReady(ILogger logger, string nodeName, string nodeId, int volumes, string apiSocket, string nbdSocket);

    [LoggerMessage(Level = LogLevel.Information, Message = "slabd stopped cleanly")]
    private static partial void LogStopped(ILogger logger);
}
