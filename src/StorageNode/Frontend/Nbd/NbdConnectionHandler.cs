using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Frontend.Nbd;

/// <summary>
/// Kestrel entry point: runs one <see cref="NbdSession"/> per accepted connection (unix socket or TCP).
/// </summary>
/// <remarks>
/// Registered as a singleton by <see cref="NbdFrontendExtensions.AddNbdFrontend"/> and attached to a
/// listener with <see cref="NbdFrontendExtensions.UseNbd"/>. Thread-safe: it holds no per-connection
/// state. A failing connection never affects the others.
/// </remarks>
public sealed class NbdConnectionHandler(
    IExportCatalog catalog,
    NbdServerOptions options,
    TimeProvider timeProvider,
    ILoggerFactory loggerFactory) : ConnectionHandler
{
    private readonly ILogger _logger = loggerFactory.CreateLogger<NbdSession>();

    /// <summary>Serves the connection until it ends; Kestrel closes the socket afterwards.</summary>
    public override Task OnConnectedAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var session = new NbdSession(connection.Transport, catalog, options, timeProvider, _logger, connection.ConnectionId);
        return session.RunAsync(connection.ConnectionClosed);
    }
}
