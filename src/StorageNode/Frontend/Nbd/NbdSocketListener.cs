using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Frontend.Nbd;

/// <summary>
/// Accepts NBD connections on unix sockets and TCP and runs an <see cref="NbdSession"/> on each,
/// over pipes that receive in large chunks.
/// </summary>
/// <remarks>
/// Why not Kestrel: its socket transport receives into 4 KiB pool blocks, so a 1 MiB WRITE costs
/// hundreds of <c>recvmsg</c> calls (measured: about 500). Here each connection's
/// <see cref="PipeReader"/> reads up to <see cref="ReceiveBufferBytes"/> per call.
/// Threading: <see cref="ListenUnix"/>/<see cref="ListenTcp"/> then <see cref="Start"/> from one
/// thread; <see cref="DisposeAsync"/> stops accepting, ends every session (each waits for its
/// in-flight requests and releases its export) and returns when all are gone.
/// </remarks>
public sealed partial class NbdSocketListener : IAsyncDisposable
{
    /// <summary>Bytes one receive call may fill; a 1 MiB write arrives in about eight calls.</summary>
    public const int ReceiveBufferBytes = 128 * 1024;

    private readonly IExportCatalog _catalog;
    private readonly NbdServerOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ILogger _sessionLogger;
    private readonly List<Socket> _listeners = [];
    private readonly List<string> _socketFiles = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConcurrentDictionary<long, Task> _sessions = new();
    private readonly CancellationTokenSource _stopping = new();
    private long _nextConnection;

    public NbdSocketListener(IExportCatalog catalog, NbdServerOptions options, TimeProvider time, ILoggerFactory loggers)
    {
        _catalog = catalog;
        _options = options;
        _time = time;
        _logger = loggers.CreateLogger<NbdSocketListener>();
        _sessionLogger = loggers.CreateLogger<NbdSession>();
    }

    /// <summary>Binds a unix socket (removing a stale socket file first).</summary>
    public void ListenUnix(string path)
    {
        if (File.Exists(path) && (File.GetAttributes(path) & FileAttributes.Directory) == 0)
        {
            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Bind(new UnixDomainSocketEndPoint(path));
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        _listeners.Add(socket);
        _socketFiles.Add(path);
    }

    public void ListenTcp(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endpoint);
            socket.Listen(512);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        _listeners.Add(socket);
    }

    /// <summary>Starts accepting on every bound socket.</summary>
    public void Start()
    {
        foreach (var listener in _listeners)
        {
            _acceptLoops.Add(AcceptLoopAsync(listener));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        await Task.WhenAll(_sessions.Values).ConfigureAwait(false);
        foreach (var path in _socketFiles)
        {
            File.Delete(path);
        }

        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket connection;
            try
            {
                connection = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                // Out of file descriptors and the like: log and keep accepting.
                LogAcceptFailed(_logger, ex.SocketErrorCode.ToString(), ex);
                continue;
            }

            var id = Interlocked.Increment(ref _nextConnection);
            _sessions[id] = ServeAsync(id, connection);
        }
    }

    private async Task ServeAsync(long id, Socket socket)
    {
        // Let the accept loop continue at once.
        await Task.Yield();
        try
        {
            if (socket.ProtocolType == ProtocolType.Tcp)
            {
                socket.NoDelay = true;
            }

            await using var stream = new NetworkStream(socket, ownsSocket: true);
            var reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: ReceiveBufferBytes, minimumReadSize: ReceiveBufferBytes / 4, leaveOpen: true));
            var writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true));
            var session = new NbdSession(new DuplexPipe(reader, writer), _catalog, _options, _time, _sessionLogger, $"nbd-{id}");
            await session.RunAsync(_stopping.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogConnectionFailed(_logger, id, ex);
        }
        finally
        {
            _sessions.TryRemove(id, out _);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    [LoggerMessage(4030, LogLevel.Warning, "NBD accept failed ({Error}); still listening")]
    private static partial void LogAcceptFailed(ILogger logger, string error, Exception exception);

    [LoggerMessage(4031, LogLevel.Error, "NBD connection nbd-{Id} failed outside its session")]
    private static partial void LogConnectionFailed(ILogger logger, long id, Exception exception);
}
