using Microsoft.AspNetCore.Connections;

namespace Slab.Replication;

/// <summary>
/// Kestrel entry point: serves the replica protocol on each accepted connection through the node's
/// <see cref="ReplicaServer"/>.
/// </summary>
/// <remarks>
/// Registered by <see cref="ReplicationExtensions.AddReplicationServer"/>, attached to a listener with
/// <see cref="ReplicationExtensions.UseReplication"/>. Thread-safe; a failing connection never
/// affects the others.
/// </remarks>
public sealed class ReplicaConnectionHandler(ReplicaServer server) : ConnectionHandler
{
    /// <summary>Serves the connection until it ends; Kestrel closes the socket afterwards.</summary>
    public override Task OnConnectedAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return server.ServeAsync(connection.Transport, connection.ConnectionId, connection.ConnectionClosed);
    }
}
