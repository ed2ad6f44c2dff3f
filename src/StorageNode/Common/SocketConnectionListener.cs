using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tmds.Linux;

namespace Slab.Common;

/// <summary>
/// Accepts stream connections on unix sockets and TCP and serves each one, on the thread pool, over a
/// socket pipe that receives in large chunks (see <see cref="ReceiveBufferBytes"/>). A subclass
/// supplies the protocol (<see cref="ServeConnectionAsync"/>) and its public way to bind; the NBD
/// frontend and the replica server are the two.
/// </summary>
/// <remarks>
/// <para>Why not Kestrel: its socket transport receives into 4 KiB pool blocks, so a 1 MiB payload
/// costs hundreds of <c>recvmsg</c> calls (measured: about 500); here about eight. TCP connections
/// have Nagle off.</para>
/// <para>At most <c>maxConnections</c> connections are served at once; a connection accepted beyond
/// that is closed at once, with a logged warning.</para>
/// <para>Threading: <see cref="BindUnix"/>/<see cref="BindTcp"/> then <see cref="StartAccepting"/>
/// from one thread; <see cref="DisposeAsync"/> (any thread, idempotent) stops accepting, cancels every
/// connection's token and returns when every <see cref="ServeConnectionAsync"/> has returned and its
/// socket is closed. <see cref="ConnectionCount"/> may be read from any thread.</para>
/// </remarks>
public abstract partial class SocketConnectionListener : IAsyncDisposable
{
    /// <summary>Bytes one receive call may fill; a 1 MiB payload arrives in about eight calls.</summary>
    public const int ReceiveBufferBytes = SocketPipe.ReceiveBufferBytes;

    /// <summary>Pause of the accept loop after the process ran out of descriptors or buffers.</summary>
    private static readonly TimeSpan AcceptBackoff = TimeSpan.FromMilliseconds(50);

    private readonly string _protocol;
    private readonly string _connectionIdPrefix;
    private readonly int _maxConnections;
    private readonly ILogger _logger;
    private readonly List<Socket> _listeners = [];
    private readonly List<string> _socketFiles = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<long, Connection> _connections = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lazy<Task> _disposal;
    private long _nextConnection;
    private int _connectionCount;
    private bool _started;

    /// <param name="protocol">Names the protocol in logs ("NBD").</param>
    /// <param name="connectionIdPrefix">Connection ids are <c>PREFIX-N</c> (N counts from 1).</param>
    /// <param name="maxConnections">Connections served at once, at least 1.</param>
    /// <param name="logger">Destination of accept and refusal logs.</param>
    protected SocketConnectionListener(string protocol, string connectionIdPrefix, int maxConnections, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(protocol);
        ArgumentNullException.ThrowIfNull(connectionIdPrefix);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxConnections, 1);
        ArgumentNullException.ThrowIfNull(logger);
        _protocol = protocol;
        _connectionIdPrefix = connectionIdPrefix;
        _maxConnections = maxConnections;
        _logger = logger;
        _disposal = new Lazy<Task>(DisposeCoreAsync, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>Connections being served now (accepted and not yet closed).</summary>
    public int ConnectionCount => Volatile.Read(ref _connectionCount);

    /// <summary>
    /// Stops accepting, cancels every connection (requests in flight see the cancellation; a protocol
    /// may still answer them) and waits for all of them to end and their sockets to close, then deletes
    /// the unix socket files. Idempotent: later calls return the same completion.
    /// </summary>
    public ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return new ValueTask(_disposal.Value);
    }

    /// <summary>
    /// Tears every current connection down now, as a crash would look to the peers: sockets are shut
    /// down both ways, so answers to requests in flight are lost and peers see end-of-stream. Serving
    /// goes on until each connection notices (its requests in flight are not cancelled:
    /// <see cref="DisposeAsync"/> does that). Any thread; new connections are still accepted. For tests.
    /// </summary>
    internal void AbortConnections()
    {
        foreach (var connection in _connections.Values)
        {
            connection.Pipe.Abort();
        }
    }

    /// <summary>
    /// Completes when every connection being served at the call has ended: its serving returned, its
    /// socket is closed and <see cref="ConnectionCount"/> no longer counts it. For tests, which wait
    /// on it (with a timeout) instead of polling the count.
    /// </summary>
    internal Task WhenCurrentConnectionsEndAsync() => Task.WhenAll(_connections.Values.Select(c => c.Serving));

    /// <summary>
    /// Binds a unix socket (removing a stale socket file first); the file is deleted on dispose.
    /// Throws <see cref="SocketException"/> when the path cannot be bound.
    /// </summary>
    protected void BindUnix(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ThrowIfStartedOrDisposed();
        if (File.Exists(path) && (File.GetAttributes(path) & FileAttributes.Directory) == 0)
        {
            File.Delete(path);
        }

        Bind(new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified), new UnixDomainSocketEndPoint(path));
        _socketFiles.Add(path);
    }

    /// <summary>
    /// Binds a TCP endpoint (port 0: an ephemeral port) and returns the address bound. Throws
    /// <see cref="SocketException"/> (e.g. <see cref="SocketError.AddressAlreadyInUse"/>) when it cannot.
    /// </summary>
    protected IPEndPoint BindTcp(IPEndPoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ThrowIfStartedOrDisposed();
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        // A restarted server rebinds its port while connections of the previous one are in TIME_WAIT:
        // SO_REUSEADDR alone. Not SocketOptionName.ReuseAddress, which on Linux sets SO_REUSEPORT as
        // well and so would let a second process bind the same port and take half the connections.
        try
        {
            socket.SetRawSocketOption(LibC.SOL_SOCKET, LibC.SO_REUSEADDR, BitConverter.GetBytes(1));
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return (IPEndPoint)Bind(socket, endpoint);
    }

    /// <summary>Starts accepting on every bound socket. Once; not after <see cref="DisposeAsync"/>.</summary>
    protected void StartAccepting()
    {
        ThrowIfStartedOrDisposed();
        _started = true;
        foreach (var listener in _listeners)
        {
            _acceptLoops.Add(AcceptLoopAsync(listener));
        }
    }

    /// <summary>
    /// Serves one connection until it ends. <paramref name="stopping"/> fires when the listener is
    /// disposed. The transport's socket is closed after this returns; exceptions are logged.
    /// </summary>
    protected abstract Task ServeConnectionAsync(IDuplexPipe transport, string connectionId, CancellationToken stopping);

    private void ThrowIfStartedOrDisposed()
    {
        ObjectDisposedException.ThrowIf(_disposal.IsValueCreated, this);
        if (_started)
        {
            throw new InvalidOperationException($"the {_protocol} listener is already started");
        }
    }

    private EndPoint Bind(Socket socket, EndPoint endpoint)
    {
        try
        {
            socket.Bind(endpoint);
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        _listeners.Add(socket);
        return socket.LocalEndPoint!;
    }

    private async Task DisposeCoreAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }

        // Every connection is registered before its accept loop goes on, so after the loops no new
        // one appears; the set shrinks as connections end.
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        await Task.WhenAll(_connections.Values.Select(c => c.Serving)).ConfigureAwait(false);
        foreach (var path in _socketFiles)
        {
            File.Delete(path);
        }

        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        // Off the caller's thread: Start returns at once.
        await Task.Yield();
        var stopping = _stopping.Token;
        while (!stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex)
            {
                // A peer that reset before the accept, out of file descriptors and the like: log and
                // keep accepting; when the process is out of resources, give it a moment.
                LogAcceptFailed(_logger, _protocol, ex.SocketErrorCode.ToString(), ex);
                if (ex.SocketErrorCode is SocketError.TooManyOpenSockets or SocketError.NoBufferSpaceAvailable)
                {
                    try
                    {
                        await Task.Delay(AcceptBackoff, stopping).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }

                continue;
            }

            if (Interlocked.Increment(ref _connectionCount) > _maxConnections)
            {
                Interlocked.Decrement(ref _connectionCount);
                LogRefused(_logger, _protocol, PeerOf(socket), _maxConnections);
                socket.Dispose();
                continue;
            }

            SocketPipe pipe;
            try
            {
                pipe = new SocketPipe(socket);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The peer is already gone (setting TCP_NODELAY on a reset socket fails).
                Interlocked.Decrement(ref _connectionCount);
                LogAcceptFailed(_logger, _protocol, ex is SocketException se ? se.SocketErrorCode.ToString() : "closed", ex);
                socket.Dispose();
                continue;
            }

            // Complete (serving task included) and registered before it runs on the thread pool, so
            // neither its removal nor anything it sends can come first.
            var connection = new Connection(Interlocked.Increment(ref _nextConnection), pipe);
            var start = new Task<Task>(() => RunConnectionAsync(connection));
            connection.Serving = start.Unwrap();
            _connections[connection.Id] = connection;
            start.Start(TaskScheduler.Default);
        }
    }

    private async Task RunConnectionAsync(Connection connection)
    {
        var connectionId = $"{_connectionIdPrefix}-{connection.Id}";
        try
        {
            await using (connection.Pipe.ConfigureAwait(false))
            {
                await ServeConnectionAsync(connection.Pipe, connectionId, _stopping.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            LogConnectionFailed(_logger, _protocol, connectionId, ex);
        }
        finally
        {
            _connections.TryRemove(connection.Id, out _);
            Interlocked.Decrement(ref _connectionCount);
        }
    }

    private static string PeerOf(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint?.ToString() ?? "unknown peer";
        }
        catch (SocketException)
        {
            return "unknown peer";
        }
    }

    /// <summary>One accepted connection: its pipe (owned) and the task serving it.</summary>
    private sealed class Connection(long id, SocketPipe pipe)
    {
        public long Id { get; } = id;

        public SocketPipe Pipe { get; } = pipe;

        /// <summary>Set by the accept loop before the connection is registered and started.</summary>
        public Task Serving { get; set; } = Task.CompletedTask;
    }

    [LoggerMessage(100, LogLevel.Warning, "{Protocol} accept failed ({Error}); still listening")]
    private static partial void LogAcceptFailed(ILogger logger, string protocol, string error, Exception exception);

    [LoggerMessage(101, LogLevel.Error, "{Protocol} connection {ConnectionId} failed outside its session")]
    private static partial void LogConnectionFailed(ILogger logger, string protocol, string connectionId, Exception exception);

    [LoggerMessage(102, LogLevel.Warning, "{Protocol} connection from {Peer} refused: {MaxConnections} connections are being served already")]
    private static partial void LogRefused(ILogger logger, string protocol, string peer, int maxConnections);
}
