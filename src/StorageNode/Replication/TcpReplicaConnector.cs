using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Slab.Common;

namespace Slab.Replication;

/// <summary>
/// Connects to a replica node over TCP, e.g. to a <see cref="ReplicaSocketListener"/>. Each
/// connection is a socket with Nagle off wrapped in the same socket pipes the listener uses (receives
/// up to <see cref="SocketConnectionListener.ReceiveBufferBytes"/> per call).
/// </summary>
/// <remarks>
/// Thread-safe; holds no connections itself. The connect is bounded only by the caller's token:
/// <see cref="ReplicaClientConnection"/> passes one that fires after
/// <see cref="ReplicationOptions.RequestTimeout"/>, so an unreachable node (SYNs dropped) fails then.
/// </remarks>
/// <example>
/// <code>
/// var connector = new TcpReplicaConnector(new IPEndPoint(nodeB, ReplicationDefaults.TcpPort), "node-b");
/// await using var replica = new RemoteReplicaTarget(volumeId, size, epoch, connector, options, nodeId, TimeProvider.System, logger);
/// </code>
/// </example>
public sealed class TcpReplicaConnector : IReplicaConnector
{
    private readonly EndPoint _endPoint;
    private readonly IPAddress? _localAddress;

    /// <param name="endPoint">The node's replication address: an <see cref="IPEndPoint"/> or a <see cref="DnsEndPoint"/>.</param>
    /// <param name="nodeName">Names the node in errors and logs, with the address; null: the address alone.</param>
    /// <param name="localAddress">
    /// This node's own address to connect from (its advertised address, so the peer and firewalls see
    /// the node's identity); null, or of another address family than <paramref name="endPoint"/>: the
    /// system picks the source address.
    /// </param>
    public TcpReplicaConnector(EndPoint endPoint, string? nodeName = null, IPAddress? localAddress = null)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        _endPoint = endPoint;
        _localAddress = localAddress is not null && localAddress.AddressFamily == endPoint.AddressFamily
            && !localAddress.Equals(IPAddress.Any) && !localAddress.Equals(IPAddress.IPv6Any) ? localAddress : null;
        RemoteName = nodeName is null ? endPoint.ToString()! : $"{nodeName} ({endPoint})";
    }

    /// <summary>"NAME (ADDRESS)", or the address when no name was given.</summary>
    public string RemoteName { get; }

    /// <summary>
    /// Opens a TCP connection. Throws <see cref="SocketException"/> (refused, unreachable, local address not available) or
    /// <see cref="OperationCanceledException"/> when <paramref name="cancellationToken"/> fires first.
    /// </summary>
    public async ValueTask<IReplicaTransport> ConnectAsync(CancellationToken cancellationToken)
    {
        // A DnsEndPoint has no address family yet: a dual-mode IPv6 socket reaches either.
        var socket = _endPoint.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6
            ? new Socket(_endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (_localAddress is not null)
            {
                socket.Bind(new IPEndPoint(_localAddress, 0));
            }

            await socket.ConnectAsync(_endPoint, cancellationToken);
            return new Transport(new SocketPipe(socket));
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The client end of one connection; the socket pipe does the work.</summary>
    private sealed class Transport(SocketPipe pipe) : IReplicaTransport
    {
        public PipeReader Input => pipe.Input;

        public PipeWriter Output => pipe.Output;

        public void Abort() => pipe.Abort();

        public ValueTask DisposeAsync() => pipe.DisposeAsync();
    }
}
