using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Replication;

/// <summary>
/// The replication port of a node: accepts TCP connections on one endpoint and runs
/// <see cref="ReplicaServer.ServeAsync"/> on each, over socket pipes that receive up to
/// <see cref="SocketConnectionListener.ReceiveBufferBytes"/> per call, with Nagle off.
/// </summary>
/// <remarks>
/// <para>Life cycle: construct (binds nothing), <see cref="Start"/> (binds and listens, then accepts
/// in the background; port 0 picks an ephemeral port, see <see cref="LocalEndPoint"/>),
/// <see cref="SocketConnectionListener.DisposeAsync"/> (stops accepting, cancels every connection —
/// requests in flight see the cancellation and are answered Closed — waits until each connection's
/// requests have finished and its socket is closed). Dispose without Start is fine.</para>
/// <para>Bounds: at most <see cref="ReplicationOptions.MaxServerConnections"/> of the server's options
/// are served at once; beyond it a new connection is closed at once with a logged warning (its client
/// sees the connect or hello fail). Per connection, <see cref="ReplicaServer"/> bounds requests in
/// flight and closes the connection on any malformed frame; nothing a peer sends throws here.</para>
/// <para>Threading: <see cref="Start"/> once, from one thread; <see cref="LocalEndPoint"/>,
/// <see cref="SocketConnectionListener.ConnectionCount"/> and DisposeAsync (idempotent) from any.</para>
/// </remarks>
/// <example>
/// <code>
/// var server = new ReplicaServer(resolver, options, nodeId, TimeProvider.System, loggers.CreateLogger&lt;ReplicaServer&gt;());
/// await using var listener = new ReplicaSocketListener(new IPEndPoint(address, ReplicationDefaults.TcpPort), server, loggers);
/// listener.Start();
/// // on another node: new RemoteReplicaTarget(volume, size, epoch, new TcpReplicaConnector(listener.LocalEndPoint, "node-b"), ...)
/// </code>
/// </example>
public sealed class ReplicaSocketListener : SocketConnectionListener
{
    private readonly IPEndPoint _bind;
    private readonly ReplicaServer _server;
    private IPEndPoint? _bound;

    /// <param name="bind">Address and port to listen on (port 0: an ephemeral port).</param>
    /// <param name="server">Serves every accepted connection; its options bound the connections.</param>
    /// <param name="loggerFactory">Source of the listener's logger (connections log to the server's logger).</param>
    public ReplicaSocketListener(IPEndPoint bind, ReplicaServer server, ILoggerFactory loggerFactory)
        : base(
            "Replication",
            "repl",
            (server ?? throw new ArgumentNullException(nameof(server))).Options.MaxServerConnections,
            (loggerFactory ?? throw new ArgumentNullException(nameof(loggerFactory))).CreateLogger<ReplicaSocketListener>())
    {
        ArgumentNullException.ThrowIfNull(bind);
        _bind = bind;
        _server = server;
    }

    /// <summary>
    /// The address listened on, with the port chosen when the bind asked for port 0. Throws
    /// <see cref="InvalidOperationException"/> before <see cref="Start"/> has succeeded.
    /// </summary>
    public IPEndPoint LocalEndPoint => Volatile.Read(ref _bound)
        ?? throw new InvalidOperationException("the replication listener is not started");

    /// <summary>
    /// Binds and listens on the endpoint given to the constructor, then accepts in the background.
    /// Once. Throws <see cref="System.Net.Sockets.SocketException"/> when the address cannot be bound
    /// (e.g. in use; the listener stays unstarted and only needs disposing),
    /// <see cref="InvalidOperationException"/> on a second call, <see cref="ObjectDisposedException"/>
    /// after dispose.
    /// </summary>
    public void Start()
    {
        var bound = BindTcp(_bind);
        StartAccepting();
        Volatile.Write(ref _bound, bound);
    }

    protected override Task ServeConnectionAsync(IDuplexPipe transport, string connectionId, CancellationToken stopping)
        => _server.ServeAsync(transport, connectionId, stopping);
}
