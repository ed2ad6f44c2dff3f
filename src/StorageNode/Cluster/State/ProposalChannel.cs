using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;

namespace Slab.Cluster.State;

/// <summary>Requests a follower forwards to the leader.</summary>
internal enum ForwardRequest : byte
{
    /// <summary>Payload: an encoded <see cref="Proposal"/>.</summary>
    Propose = 1,

    /// <summary>Payload: "memberId raftEndPoint proposalEndPoint" (UTF-8).</summary>
    AddVoter = 2,

    /// <summary>Payload: the Raft endpoint (UTF-8).</summary>
    RemoveVoter = 3,

    /// <summary>
    /// Payload: an encoded <see cref="Proposal"/> that the leader passes through its
    /// <see cref="ILeaderCommandPreparer"/> before replicating it.
    /// </summary>
    ProposePrepared = 4,

    /// <summary>
    /// Any voter answers (leader or not): payload = known revision (i64 LE) | longest wait in ms (i32 LE).
    /// The answer comes when the voter's revision differs from the known one or the wait ends:
    /// info length (i32 LE) | <see cref="WatchInfo"/> JSON | encoded state (empty when unchanged).
    /// This is how non-voting nodes keep their read copy.
    /// </summary>
    Watch = 5,
}

/// <summary>How the leader answered a forwarded request.</summary>
internal enum ForwardStatus : byte
{
    /// <summary>Done. For proposals the payload is the encoded <see cref="CommandResult"/>.</summary>
    Done = 0,

    /// <summary>The receiver is not the leader; nothing was attempted. Retry at the current leader.</summary>
    NotLeader = 1,

    /// <summary>Attempted and failed; the payload is a message. For proposals the outcome is unknown.</summary>
    Failed = 2,

    /// <summary>
    /// Not attempted: the request is malformed, or this receiver cannot take that kind of request;
    /// nothing was replicated and the same request fails the same way. The payload is a message.
    /// </summary>
    Refused = 3,
}

/// <summary>
/// The forwarding channel between members: one TCP request/response per connection,
/// <c>"SLFW" | type (1) | length (4, LE) | payload</c> answered by <c>status (1) | length (4, LE) | payload</c>.
/// Plain TCP on the cluster network, like the Raft port; it carries control-plane commands only.
/// </summary>
internal sealed partial class ProposalChannel : IAsyncDisposable
{
    public const int MaxPayload = 16 * 1024 * 1024;

    private static ReadOnlySpan<byte> Magic => "SLFW"u8;

    private readonly TcpListener _listener;
    private readonly Func<ForwardRequest, byte[], CancellationToken, Task<(ForwardStatus Status, byte[] Payload)>> _handler;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly TimeSpan _requestTimeout;
    private Task _acceptLoop = Task.CompletedTask;

    public ProposalChannel(
        IPEndPoint endPoint,
        TimeSpan requestTimeout,
        Func<ForwardRequest, byte[], CancellationToken, Task<(ForwardStatus Status, byte[] Payload)>> handler,
        ILogger logger)
    {
        _listener = new TcpListener(endPoint);
        _requestTimeout = requestTimeout;
        _handler = handler;
        _logger = logger;
    }

    public void Start()
    {
        _listener.Start();
        _acceptLoop = AcceptLoopAsync(_stop.Token);
    }

    /// <summary>Sends one request and returns the answer.</summary>
    /// <exception cref="SocketException">Could not connect (nothing was sent).</exception>
    /// <exception cref="IOException">The connection broke after the request was sent.</exception>
    public static async Task<(ForwardStatus Status, byte[] Payload)> SendAsync(
        IPEndPoint endPoint, ForwardRequest type, byte[] payload, TimeSpan connectTimeout, CancellationToken cancellationToken)
    {
        using var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using (var connect = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
        {
            connect.CancelAfter(connectTimeout);
            try
            {
                await socket.ConnectAsync(endPoint, connect.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new SocketException((int)SocketError.TimedOut);
            }
        }

        await using var stream = new NetworkStream(socket, ownsSocket: false);
        var header = new byte[9];
        Magic.CopyTo(header);
        header[4] = (byte)type;
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(5), payload.Length);
        await stream.WriteAsync(header, cancellationToken).ConfigureAwait(false);
        await stream.WriteAsync(payload, cancellationToken).ConfigureAwait(false);

        var answer = new byte[5];
        await stream.ReadExactlyAsync(answer, cancellationToken).ConfigureAwait(false);
        var length = BinaryPrimitives.ReadInt32LittleEndian(answer.AsSpan(1));
        if (length is < 0 or > MaxPayload)
        {
            throw new IOException($"forwarding answer of {length} bytes");
        }

        var body = new byte[length];
        await stream.ReadExactlyAsync(body, cancellationToken).ConfigureAwait(false);
        return ((ForwardStatus)answer[0], body);
    }

    private async Task AcceptLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(stop).ConfigureAwait(false);
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                Log.AcceptFailed(_logger, e);
                continue;
            }

            _ = ServeAsync(socket, stop);
        }
    }

    private async Task ServeAsync(Socket socket, CancellationToken stop)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
        timeout.CancelAfter(_requestTimeout);
        try
        {
            socket.NoDelay = true;
            await using var stream = new NetworkStream(socket, ownsSocket: true);
            var header = new byte[9];
            await stream.ReadExactlyAsync(header, timeout.Token).ConfigureAwait(false);
            var length = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(5));
            if (!header.AsSpan(0, 4).SequenceEqual(Magic) || length is < 0 or > MaxPayload || !Enum.IsDefined((ForwardRequest)header[4]))
            {
                Log.BadRequest(_logger, socket.RemoteEndPoint?.ToString() ?? "?");
                return;
            }

            var payload = new byte[length];
            await stream.ReadExactlyAsync(payload, timeout.Token).ConfigureAwait(false);
            var (status, body) = await _handler((ForwardRequest)header[4], payload, timeout.Token).ConfigureAwait(false);
            var answer = new byte[5];
            answer[0] = (byte)status;
            BinaryPrimitives.WriteInt32LittleEndian(answer.AsSpan(1), body.Length);
            await stream.WriteAsync(answer, timeout.Token).ConfigureAwait(false);
            await stream.WriteAsync(body, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            Log.ServeFailed(_logger, e.Message);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(_logger, e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        await _acceptLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _listener.Dispose();
        _stop.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Warning, Message = "Accepting a forwarding connection failed")]
        public static partial void AcceptFailed(ILogger logger, Exception exception);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Malformed forwarding request from {Remote}; connection closed")]
        public static partial void BadRequest(ILogger logger, string remote);

        [LoggerMessage(Level = LogLevel.Debug, Message = "Forwarding connection ended: {Reason}")]
        public static partial void ServeFailed(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Error, Message = "Handling a forwarded request failed")]
        public static partial void HandlerFailed(ILogger logger, Exception exception);
    }
}
