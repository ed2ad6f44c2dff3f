using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Slab.Csi.Controller;
using Slab.Csi.Identity;
using Slab.Csi.Node;
using Slab.Csi.Slabd;

namespace Slab.Csi.Hosting;

/// <summary>
/// Builds and runs slab-csi: options → gRPC (HTTP/2) on the CO's unix socket → the services of the
/// mode → wait for SIGTERM/SIGINT. A stale socket file from a previous run is replaced.
/// </summary>
internal static partial class CsiHost
{
    public static async Task<int> RunAsync(string[] args)
    {
        CsiOptions options;
        try
        {
            options = CsiOptions.Parse(args);
        }
        catch (FormatException ex)
        {
            await Console.Error.WriteLineAsync($"slab-csi: {ex.Message}\n\n{CsiOptions.Usage}").ConfigureAwait(false);
            return 2;
        }

        if (options.ShowHelp)
        {
            await Console.Out.WriteLineAsync(CsiOptions.Usage).ConfigureAwait(false);
            return 0;
        }

        try
        {
            var directory = Path.GetDirectoryName(options.Endpoint);
            if (!string.IsNullOrEmpty(directory))
                Directory.CreateDirectory(directory);
            if (File.Exists(options.Endpoint))
                File.Delete(options.Endpoint);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            await Console.Error.WriteLineAsync($"slab-csi: cannot prepare the socket {options.Endpoint}: {ex.Message}").ConfigureAwait(false);
            return 1;
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(kestrel =>
            kestrel.ListenUnixSocket(options.Endpoint, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(_ => new SlabdApi(options.Slabd));
        builder.Services.AddGrpc(o => o.Interceptors.Add<CsiErrorInterceptor>());

        await using var app = builder.Build();
        app.MapGrpcService<IdentityService>();
        if (options.ServesController)
        {
            app.MapGrpcService<ControllerService>();
            app.MapGrpcService<GroupControllerService>();
        }
        if (options.ServesNode)
            app.MapGrpcService<NodeService>();

        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("slab-csi");
        LogStarting(logger, IdentityService.Version, options.Mode, options.Endpoint, options.Slabd.Original);
        app.Lifetime.ApplicationStarted.Register(() => LogReady(logger, options.Endpoint));
        try
        {
            await app.RunAsync().ConfigureAwait(false);
        }
        catch (IOException ex)
        {
            await Console.Error.WriteLineAsync($"slab-csi: cannot listen on {options.Endpoint}: {ex.Message}").ConfigureAwait(false);
            return 1;
        }

        return 0;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "slab-csi {Version} ({Mode}) serving CSI on {Endpoint}, slabd at {Slabd}")]
    private static partial void LogStarting(ILogger logger, string version, CsiMode mode, string endpoint, string slabd);

    [LoggerMessage(Level = LogLevel.Information, Message = "slab-csi ready on {Endpoint}")]
    private static partial void LogReady(ILogger logger, string endpoint);
}
