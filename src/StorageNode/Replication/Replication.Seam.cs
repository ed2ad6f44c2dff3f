using Slab.Block;

namespace Slab.Replication;

// The replication layer's public surface: the node-to-node replica data protocol (TCP 9503).
// A volume controller on node A reaches the replica of a volume on node B through a
// RemoteReplicaTarget (an IBlockTarget); node B serves it with a ReplicaServer that finds its local
// replica through an IReplicaResolver. Wire format: docs/replication-protocol.md.
//
//   ReplicationOptions            limits and timeouts, shared by client and server (this file)
//   ReplicationDefaults           well-known port (this file)
//   IReplicaResolver, ReplicaHandle    what the server asks the store/volume layer (this file)
//   IReplicaConnector, IReplicaTransport how a client reaches a node (this file; TcpReplicaConnector)
//   ReplicaServer                 serves connections over any IDuplexPipe (ReplicaServer*.cs)
//   ReplicaSocketListener         TCP accept loop running ReplicaServer per connection (socket pipes, Nagle off)
//   ReplicationExtensions         services.AddReplicationServer(...)
//   ReplicaClientConnection       one client connection: hello, pipelined requests (ReplicaClientConnection*.cs)
//   RemoteReplicaTarget           IBlockTarget of one volume's replica on one node, over a small connection pool

/// <summary>
/// Limits and timeouts of the replication protocol. Immutable; one instance is shared by every
/// connection of a server or client.
/// </summary>
public sealed record ReplicationOptions
{
    /// <summary>Default and largest payload (READ/WRITE length) in bytes: 32 MiB.</summary>
    public const int DefaultMaxPayload = 32 * 1024 * 1024;

    /// <summary>
    /// Largest READ or WRITE length in bytes (default 32 MiB, 4 KiB..32 MiB). A request frame whose
    /// length exceeds it closes the connection before anything is allocated. The server announces
    /// its value in the hello; a client never sends more than the smaller of both.
    /// </summary>
    public int MaxPayload { get; init; } = DefaultMaxPayload;

    /// <summary>
    /// Requests one connection may have in flight (sent and not yet answered), on both sides.
    /// A server stops reading when all its slots are busy; a client caller waits for a free slot.
    /// Memory per connection is therefore bounded by this times <see cref="MaxPayload"/>.
    /// Default 64; 1..4096.
    /// </summary>
    public int MaxInFlightPerConnection { get; init; } = 64;

    /// <summary>
    /// Time a client request may take from being sent until its response arrived, measured with the
    /// injected <see cref="TimeProvider"/>. On expiry the request fails with
    /// <see cref="BlockError.IOError"/> naming the node, and the connection is closed (its other
    /// requests fail the same way; the next request reconnects). Also bounds connect + hello.
    /// Default 10 s.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time a server gives a new connection to complete the hello. Default 10 s.</summary>
    public TimeSpan HelloTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Connections a <see cref="ReplicaSocketListener"/> serves at once; a connection accepted beyond
    /// it is closed at once, with a logged warning (the client's connect fails). Default 1024; 1..65536.
    /// </summary>
    public int MaxServerConnections { get; init; } = 1024;

    /// <summary>Connections a <see cref="RemoteReplicaTarget"/> keeps to its node (round-robin). Default 2; 1..64.</summary>
    public int ConnectionsPerTarget { get; init; } = 2;

    /// <summary>
    /// Wait after the first failed connect before the next attempt; doubles per consecutive failure
    /// up to <see cref="ReconnectBackoffMax"/>. Requests during the wait fail at once with
    /// <see cref="BlockError.IOError"/> (a controller must not stall on a dead replica). Default 100 ms.
    /// </summary>
    public TimeSpan ReconnectBackoffMin { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Longest wait between connect attempts. Default 5 s.</summary>
    public TimeSpan ReconnectBackoffMax { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Lowest protocol version this side speaks (tests change it to exercise negotiation).</summary>
    internal ushort MinProtocolVersion { get; init; } = ReplicaProtocol.Version1;

    /// <summary>Highest protocol version this side speaks.</summary>
    internal ushort MaxProtocolVersion { get; init; } = ReplicaProtocol.Version1;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when a value is outside its documented range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxPayload, 4096, nameof(MaxPayload));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxPayload, Buffers.AlignedBufferPool.MaximumBufferSize, nameof(MaxPayload));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxInFlightPerConnection, 1, nameof(MaxInFlightPerConnection));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxInFlightPerConnection, ReplicaProtocol.MaxSlots, nameof(MaxInFlightPerConnection));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero, nameof(RequestTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HelloTimeout, TimeSpan.Zero, nameof(HelloTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxServerConnections, 1, nameof(MaxServerConnections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxServerConnections, 65536, nameof(MaxServerConnections));
        ArgumentOutOfRangeException.ThrowIfLessThan(ConnectionsPerTarget, 1, nameof(ConnectionsPerTarget));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ConnectionsPerTarget, 64, nameof(ConnectionsPerTarget));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ReconnectBackoffMin, TimeSpan.Zero, nameof(ReconnectBackoffMin));
        ArgumentOutOfRangeException.ThrowIfLessThan(ReconnectBackoffMax, ReconnectBackoffMin, nameof(ReconnectBackoffMax));
        ArgumentOutOfRangeException.ThrowIfZero(MinProtocolVersion, nameof(MinProtocolVersion));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxProtocolVersion, MinProtocolVersion, nameof(MaxProtocolVersion));
    }
}

/// <summary>Well-known replication addresses (see the design's names and defaults).</summary>
public static class ReplicationDefaults
{
    /// <summary>The replication data plane's TCP port.</summary>
    public const int TcpPort = 9503;
}

/// <summary>
/// The local replica of a volume as the server sees it: the block target to serve and the fencing
/// gate every request passes (requests with a lower epoch are refused; see <see cref="EpochGate"/>).
/// </summary>
public readonly record struct ReplicaHandle(IBlockTarget Target, EpochGate Gate);

/// <summary>
/// Finds the local replica of a volume for the <see cref="ReplicaServer"/>. Implemented by the
/// store/volume layer (which persists epochs); tests use a dictionary.
/// </summary>
/// <remarks>
/// Thread-safe: called concurrently from every connection's requests.
/// <para>Fencing contract: the server admits every request through the replica's
/// <see cref="ReplicaHandle.Gate"/> and holds the admission until the target call has returned, so
/// raising the gate's epoch (by <see cref="TryAdvanceEpochAsync"/> or by the control plane directly)
/// drains the requests admitted under the old epoch before the new one is admitted: no write of a
/// fenced controller can land after a write of its successor.</para>
/// </remarks>
public interface IReplicaResolver
{
    /// <summary>
    /// Returns the volume's local replica and its gate, or false when this node holds no replica of
    /// the volume (the request is answered with UnknownVolume). Called once per request: must not
    /// block and should not allocate.
    /// </summary>
    bool TryGetReplica(Guid volumeId, out ReplicaHandle replica);

    /// <summary>
    /// A request carried <paramref name="epoch"/>, higher than the epoch the replica's gate admits.
    /// Returns true once the control plane has committed that epoch and the gate has been raised to
    /// at least <paramref name="epoch"/> (the server then admits the request again), false to reject
    /// the request (answered with EpochRejected; the client sees <see cref="BlockError.IOError"/>,
    /// since its epoch may simply not have reached this node yet). Must not throw except
    /// <see cref="OperationCanceledException"/>.
    /// </summary>
    ValueTask<bool> TryAdvanceEpochAsync(Guid volumeId, long epoch, CancellationToken cancellationToken);
}

/// <summary>A connected byte stream to a replica node. Disposing it closes the connection.</summary>
public interface IReplicaTransport : System.IO.Pipelines.IDuplexPipe, IAsyncDisposable
{
    /// <summary>
    /// Tears the connection down now, from any thread; pending reads end (with an error or
    /// end-of-stream). Idempotent. <see cref="IAsyncDisposable.DisposeAsync"/> is still called afterwards.
    /// </summary>
    void Abort();
}

/// <summary>Opens connections to one replica node (TCP in slabd, in-memory pipes in tests).</summary>
public interface IReplicaConnector
{
    /// <summary>Names the node in errors and logs (e.g. "node-b (10.0.0.2:9503)").</summary>
    string RemoteName { get; }

    /// <summary>
    /// Connects. Failures are <see cref="IOException"/>, <see cref="System.Net.Sockets.SocketException"/>
    /// or <see cref="OperationCanceledException"/>; the client turns them into
    /// <see cref="BlockError.IOError"/> and backs off.
    /// </summary>
    ValueTask<IReplicaTransport> ConnectAsync(CancellationToken cancellationToken);
}
