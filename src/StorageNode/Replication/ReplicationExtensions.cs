using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Slab.Replication;

/// <summary>Wires the replication server into DI.</summary>
/// <example>
/// <code>
/// services.AddSingleton&lt;IReplicaResolver, StoreReplicaResolver&gt;();
/// services.AddReplicationServer(nodeId, new ReplicationOptions { MaxInFlightPerConnection = 128 });
/// // then, in a hosted service:
/// var listener = new ReplicaSocketListener(new IPEndPoint(address, ReplicationDefaults.TcpPort),
///     sp.GetRequiredService&lt;ReplicaServer&gt;(), sp.GetRequiredService&lt;ILoggerFactory&gt;());
/// listener.Start();   // and await listener.DisposeAsync() on stop
/// </code>
/// </example>
public static class ReplicationExtensions
{
    /// <summary>
    /// Registers the node's <see cref="ReplicaServer"/> (announcing <paramref name="nodeId"/>), the
    /// options (defaults when null; registered unless already present) and
    /// <see cref="TimeProvider.System"/> unless a TimeProvider is registered. The caller registers the
    /// <see cref="IReplicaResolver"/> and runs a <see cref="ReplicaSocketListener"/> over the server.
    /// </summary>
    public static IServiceCollection AddReplicationServer(this IServiceCollection services, Guid nodeId, ReplicationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        options ??= new ReplicationOptions();
        options.Validate();
        services.TryAddSingleton(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(sp => new ReplicaServer(
            sp.GetRequiredService<IReplicaResolver>(),
            options,
            nodeId,
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<ReplicaServer>()));
        return services;
    }
}
