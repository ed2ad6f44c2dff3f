using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Frontend.Nbd;
using Slab.Host;
using Slab.Volumes;

namespace Slab.Hosting;

public static partial class SlabdHost
{
    private static void ConfigureHostAttach(IServiceCollection services, SlabdOptions options)
    {
        // Stale attachments are removed explicitly before the store opens (RemoveStaleAttachmentsAsync).
        services.AddHostAttach(new Slab.Host.HostOptions(options.RunDirectory), recoverOnStart: false);
        services.AddNbdFrontend();
        services.AddSingleton<IExportCatalog>(sp => sp.GetRequiredService<VolumeManager>());
        services.AddSingleton<AttachNbdConnectionHandler>();
    }

    private static async Task RemoveStaleAttachmentsAsync(IServiceProvider services, ILogger logger)
    {
        var attacher = services.GetRequiredService<IBlockDeviceAttacher>();
        foreach (var removal in await attacher.RemoveStaleAsync(CancellationToken.None).ConfigureAwait(false))
        {
            var actions = string.Join("; ", removal.Actions);
            LogStaleAttachment(logger, removal.VolumeName, removal.Complete, actions);
        }
    }

    private static void ConfigureNbdListeners(KestrelServerOptions kestrel, SlabdOptions options)
    {
        kestrel.ListenUnixSocket(options.NbdSocketPath, l => l.UseNbd());
        if (options.NbdPort > 0)
        {
            kestrel.Listen(ParseAddress(options.ListenAddress), options.NbdPort, l => l.UseNbd());
        }

        kestrel.ListenUnixSocket(options.AttachSocketPath, l => l.UseConnectionHandler<AttachNbdConnectionHandler>());
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Removed stale attachment of volume {Volume} left by a crash (complete: {Complete}): {Actions}")]
    private static partial void LogStaleAttachment(ILogger logger, string volume, bool complete, string actions);
}

/// <summary>NBD on the private attach socket: the same protocol over <see cref="AttachExportCatalog"/>.</summary>
public sealed class AttachNbdConnectionHandler(AttachExportCatalog catalog, NbdServerOptions options, TimeProvider time, ILoggerFactory loggers)
    : ConnectionHandler
{
    private readonly NbdConnectionHandler _inner = new(catalog, options, time, loggers);

    public override Task OnConnectedAsync(ConnectionContext connection) => _inner.OnConnectedAsync(connection);
}
