using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Host;

namespace Slab.Frontend.Fuse;

/// <summary>
/// <see cref="IAttachFileServer"/> over an export catalog (slabd's attach catalog): each attachment
/// gets a lease on its export and a <see cref="FuseFileServer"/> of it.
/// </summary>
public sealed class FuseAttachFileServer(IExportCatalog exports, FuseFileServerOptions options, ILoggerFactory loggers) : IAttachFileServer
{
    private readonly ILogger _logger = loggers.CreateLogger<FuseFileServer>();

    public async Task<IAsyncDisposable> ServeAsync(string exportName, string mountPoint, string fileName, CancellationToken cancellationToken)
    {
        var lease = await exports.OpenExportAsync(exportName, cancellationToken).ConfigureAwait(false)
            ?? throw new HostAttachException(HostAttachError.DeviceFailed, $"export '{exportName}' is not served for attaching") { VolumeName = fileName };
        try
        {
            return new Served(FuseFileServer.Mount(mountPoint, fileName, lease.Target, options, _logger), lease);
        }
        catch (IOException e)
        {
            await lease.DisposeAsync().ConfigureAwait(false);
            throw new HostAttachException(HostAttachError.DeviceFailed, e.Message) { VolumeName = fileName };
        }
    }

    private sealed class Served(FuseFileServer server, IBlockTargetLease lease) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await server.DisposeAsync().ConfigureAwait(false);
            await lease.DisposeAsync().ConfigureAwait(false);
        }
    }
}
