using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Common;

namespace Slab.Frontend.Nbd;

/// <summary>
/// Accepts NBD connections on unix sockets and TCP and runs an <see cref="NbdSession"/> on each,
/// over pipes that receive in large chunks (the accept loop and socket pipes are
/// <see cref="SocketConnectionListener"/>'s).
/// </summary>
/// <remarks>
/// Threading: <see cref="ListenUnix"/>/<see cref="ListenTcp"/> then <see cref="Start"/> from one
/// thread; <see cref="SocketConnectionListener.DisposeAsync"/> stops accepting, ends every session
/// (each waits for its in-flight requests and releases its export) and returns when all are gone. At
/// most <see cref="NbdServerOptions.MaxConnections"/> sessions run at once.
/// </remarks>
public sealed class NbdSocketListener : SocketConnectionListener
{
    private readonly IExportCatalog _catalog;
    private readonly NbdServerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _sessionLogger;

    /// <param name="catalog">Resolves export names for every session.</param>
    /// <param name="options">Per-connection limits and the connection bound (validated here).</param>
    /// <param name="time">Clock for the handshake timeout.</param>
    /// <param name="loggers">Source of the listener's and the sessions' loggers.</param>
    public NbdSocketListener(IExportCatalog catalog, NbdServerOptions options, TimeProvider time, ILoggerFactory loggers)
        : base("NBD", "nbd", Validated(options).MaxConnections, (loggers ?? throw new ArgumentNullException(nameof(loggers))).CreateLogger<NbdSocketListener>())
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(time);
        _catalog = catalog;
        _options = options;
        _time = time;
        _sessionLogger = loggers.CreateLogger<NbdSession>();
    }

    /// <summary>Binds a unix socket (removing a stale socket file first); the file is deleted on dispose.</summary>
    public void ListenUnix(string path) => BindUnix(path);

    /// <summary>Binds a TCP endpoint (port 0: an ephemeral port) and returns the address bound.</summary>
    public IPEndPoint ListenTcp(IPEndPoint endpoint) => BindTcp(endpoint);

    /// <summary>Starts accepting on every bound socket (once).</summary>
    public void Start() => StartAccepting();

    protected override Task ServeConnectionAsync(IDuplexPipe transport, string connectionId, CancellationToken stopping)
        => new NbdSession(transport, _catalog, _options, _time, _sessionLogger, connectionId).RunAsync(stopping);

    private static NbdServerOptions Validated(NbdServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options;
    }
}
