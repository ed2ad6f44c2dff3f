using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Slab.Replication;

/// <summary>Wires the replication server into DI and Kestrel.</summary>
/// <example>
/// <code>
/// builder.Services.AddSingleton&lt;IReplicaResolver, StoreReplicaResolver&gt;();
/// builder.Services.AddReplicationServer(nodeId, new ReplicationOptions { MaxInFlightPerConnection = 128 });
/// builder.WebHost.ConfigureKestrel(k => k.ListenReplication(IPAddress.Loopback));
/// // or, per listener: k.Listen(address, port, listen => listen.UseReplication());
/// </code>
/// </example>
public static class ReplicationExtensions
{
    /// <summary>
    /// Registers the node's <see cref="ReplicaServer"/> (announcing <paramref name="nodeId"/>), the
    /// <see cref="ReplicaConnectionHandler"/>, the options (defaults when null; registered unless
    /// already present) and <see cref="TimeProvider.System"/> unless a TimeProvider is registered. The
    /// caller registers the <see cref="IReplicaResolver"/>.
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
        services.AddSingleton<ReplicaConnectionHandler>();
        return services;
    }

    /// <summary>Makes this listener speak the replica protocol (requires <see cref="AddReplicationServer"/>).</summary>
    public static ListenOptions UseReplication(this ListenOptions listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.UseConnectionHandler<ReplicaConnectionHandler>();
        return listen;
    }

    /// <summary>Listens for replication on <paramref name="address"/>:<paramref name="port"/> (port 0: ephemeral).</summary>
    public static KestrelServerOptions ListenReplication(this KestrelServerOptions kestrel, IPAddress address, int port = ReplicationDefaults.TcpPort)
    {
        ArgumentNullException.ThrowIfNull(kestrel);
        ArgumentNullException.ThrowIfNull(address);
        kestrel.Listen(address, port, listen => listen.UseReplication());
        return kestrel;
    }
}
