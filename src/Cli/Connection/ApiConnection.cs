using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Slab.Api.V1;

namespace Slab.Cli.Connection;

/// <summary>
/// A lazily opened gRPC channel to slabd and its service clients. Nothing touches the network
/// until the first client is used, so usage errors cost no connection.
/// </summary>
internal sealed class ApiConnection : IDisposable
{
    /// <summary>
    /// Attach, detach, mount and unmount may format or wait for a device; KVDB membership changes
    /// and decommissioning wait for the cluster to commit them.
    /// </summary>
    public static readonly TimeSpan LongDeadline = TimeSpan.FromMinutes(5);

    public static readonly TimeSpan DefaultDeadline = TimeSpan.FromSeconds(30);

    private readonly CancellationToken _cancellation;
    private GrpcChannel? _channel;

    public ApiConnection(Endpoint endpoint, CancellationToken cancellation = default)
    {
        Endpoint = endpoint;
        _cancellation = cancellation;
    }

    public Endpoint Endpoint { get; }

    public Volumes.VolumesClient Volumes => new(Channel);

    public Snapshots.SnapshotsClient Snapshots => new(Channel);

    public MountAttach.MountAttachClient MountAttach => new(Channel);

    public Api.V1.Node.NodeClient Node => new(Channel);

    public Api.V1.Cluster.ClusterClient Cluster => new(Channel);

    private GrpcChannel Channel => _channel ??= Open(Endpoint);

    /// <summary>Call options with a deadline of <paramref name="timeout"/> from now.</summary>
    public CallOptions Options(TimeSpan? timeout = null) =>
        new(deadline: DateTime.UtcNow + (timeout ?? DefaultDeadline), cancellationToken: _cancellation);

    public void Dispose() => _channel?.Dispose();

    /// <summary>A channel to <paramref name="endpoint"/> (unix socket or TCP, HTTP/2 without TLS).</summary>
    internal static GrpcChannel Open(Endpoint endpoint)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(10),
            UseProxy = false,
            EnableMultipleHttp2Connections = false,
        };
        Uri address;
        if (endpoint.SocketPath is { } path)
        {
            handler.ConnectCallback = (_, token) => ConnectUnixAsync(path, token);
            // Any authority works over a unix socket; plain http means HTTP/2 with prior knowledge.
            address = new Uri("http://localhost");
        }
        else
        {
            address = endpoint.Address!;
        }
        return GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            HttpHandler = handler,
            DisposeHttpClient = true,
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        });
    }

    private static async ValueTask<Stream> ConnectUnixAsync(string path, CancellationToken token)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), token);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// True when the call failed because no connection to slabd could be made (as opposed to
    /// slabd answering UNAVAILABLE itself, e.g. while shutting down). <paramref name="reason"/>
    /// is the socket-level cause.
    /// </summary>
    public static bool IsUnreachable(RpcException ex, out string reason)
    {
        reason = "";
        if (ex.StatusCode != StatusCode.Unavailable && ex.StatusCode != StatusCode.Internal)
            return false;
        Exception? e = ex.Status.DebugException;
        if (e is null)
            return false;
        SocketException? socketError = null;
        HttpRequestException? httpError = null;
        var innermost = e;
        for (var cur = e; cur is not null; cur = cur.InnerException)
        {
            socketError ??= cur as SocketException;
            httpError ??= cur as HttpRequestException;
            innermost = cur;
        }
        if (socketError is null && httpError is null)
            return false;
        if (socketError is not null)
        {
            reason = socketError.Message;
            if (socketError.SocketErrorCode == SocketError.AccessDenied)
                reason += " (the local API socket is root-only; run as root)";
        }
        else
        {
            reason = innermost.Message;
        }
        return true;
    }
}
