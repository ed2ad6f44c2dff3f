using System.IO.Pipelines;
using Microsoft.Extensions.Logging;

namespace Slab.Replication;

/// <summary>
/// Serves the replica data protocol: one <see cref="ReplicaServer"/> per node, one
/// <see cref="ServeAsync"/> call per accepted connection.
/// </summary>
/// <remarks>
/// <para>Runs over any <see cref="IDuplexPipe"/>: socket pipes of a <see cref="ReplicaSocketListener"/>
/// over TCP, in-memory pipes in tests and benchmarks.</para>
/// <para>Threading: thread-safe, holds no per-connection state. Per connection a reader loop parses
/// requests into pre-allocated slots (at most <see cref="ReplicationOptions.MaxInFlightPerConnection"/>)
/// which run on the thread pool and answer out of order; when every slot is busy the reader stops
/// reading (back-pressure).</para>
/// <para>Safety: a malformed frame (bad magic or crc, a length over the maximum, a truncated frame,
/// an unknown version) closes that connection with a logged reason before any target is touched;
/// nothing a peer sends makes <see cref="ServeAsync"/> throw. Fencing: a request whose epoch is lower
/// than the replica's is answered StaleEpoch without touching the target; a higher one is put to
/// <see cref="IReplicaResolver.TryAdvanceEpochAsync"/>.</para>
/// </remarks>
public sealed class ReplicaServer
{
    /// <param name="resolver">Finds local replicas and their epochs.</param>
    /// <param name="options">Limits (validated here).</param>
    /// <param name="nodeId">This node's id, sent in the hello.</param>
    /// <param name="timeProvider">Clock for the hello timeout.</param>
    /// <param name="logger">Destination of connection logs.</param>
    public ReplicaServer(IReplicaResolver resolver, ReplicationOptions options, Guid nodeId, TimeProvider timeProvider, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(resolver);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        options.Validate();
        Resolver = resolver;
        Options = options;
        NodeId = nodeId;
        TimeProvider = timeProvider;
        Logger = logger;
    }

    /// <summary>This node's id as announced to clients.</summary>
    public Guid NodeId { get; }

    internal IReplicaResolver Resolver { get; }

    internal ReplicationOptions Options { get; }

    internal TimeProvider TimeProvider { get; }

    internal ILogger Logger { get; }

    /// <summary>
    /// Serves one connection to its end: the peer closed it, it was closed for a protocol violation,
    /// or <paramref name="connectionClosed"/> fired (transport gone, server stopping; it is also passed
    /// to the target calls in flight). Waits for every request in flight, then completes both pipe
    /// ends. Never throws.
    /// </summary>
    public Task ServeAsync(IDuplexPipe transport, string connectionId, CancellationToken connectionClosed)
    {
        ArgumentNullException.ThrowIfNull(transport);
        return new ReplicaServerConnection(this, transport, connectionId ?? string.Empty).RunAsync(connectionClosed);
    }
}
