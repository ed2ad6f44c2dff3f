using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Net.Client;
using Slab.Cluster.State;
using Slab.Common;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

/// <summary>
/// gRPC channels to other nodes' APIs (one per endpoint, reused), for the calls one node makes on
/// another: replica sync, filesystem flags, and requests forwarded to the node that holds a volume.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class PeerApi : IDisposable
{
    /// <summary>Deadline of one node-to-node call.</summary>
    public static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(15);

    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    /// <summary>The channel to <paramref name="node"/>'s API.</summary>
    /// <exception cref="SlabException">The node recorded no API endpoint.</exception>
    public GrpcChannel ChannelTo(NodeInfo node)
    {
        var api = NodeEndpoints.From(node.Addresses).Api;
        if (NodeEndpoints.Parse(api) is null)
        {
            throw new SlabException(SlabErrorCode.Unavailable, $"node {node.Name} has no API endpoint in the cluster state");
        }

        return _channels.GetOrAdd(api, static endpoint => GrpcChannel.ForAddress($"http://{endpoint}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(3), EnableMultipleHttp2Connections = true },
            MaxReceiveMessageSize = 64 * 1024 * 1024,
        }));
    }

    public V1.NodeInternal.NodeInternalClient Internal(NodeInfo node) => new(ChannelTo(node));

    /// <summary>
    /// One call to <paramref name="node"/>'s node-to-node service with the node-to-node deadline; a
    /// failure becomes the <see cref="SlabException"/> of <see cref="Translate"/>.
    /// </summary>
    public async Task<T> CallAsync<T>(NodeInfo node, Func<V1.NodeInternal.NodeInternalClient, CallOptions, AsyncUnaryCall<T>> call, CancellationToken cancellationToken)
    {
        try
        {
            return await call(Internal(node), Call(cancellationToken));
        }
        catch (RpcException e)
        {
            throw Translate(e, node);
        }
    }

    /// <summary>Call options with the node-to-node deadline, linked to <paramref name="cancellationToken"/>.</summary>
    public static CallOptions Call(CancellationToken cancellationToken) =>
        new(deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);

    /// <summary>
    /// Turns a failed node-to-node call into the error the caller's client should see: the remote
    /// node's own refusals keep their code and message; transport failures become Unavailable naming the node.
    /// </summary>
    public static SlabException Translate(RpcException e, NodeInfo node) => e.StatusCode switch
    {
        StatusCode.InvalidArgument => new SlabException(SlabErrorCode.InvalidArgument, e.Status.Detail, e),
        StatusCode.NotFound => new SlabException(SlabErrorCode.NotFound, e.Status.Detail, e),
        StatusCode.AlreadyExists => new SlabException(SlabErrorCode.AlreadyExists, e.Status.Detail, e),
        StatusCode.FailedPrecondition => new SlabException(SlabErrorCode.FailedPrecondition, e.Status.Detail, e),
        StatusCode.ResourceExhausted => new SlabException(SlabErrorCode.ResourceExhausted, e.Status.Detail, e),
        _ => new SlabException(SlabErrorCode.Unavailable, $"node {node.Name} did not answer ({e.StatusCode}: {e.Status.Detail})", e),
    };

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }

        _channels.Clear();
    }
}
