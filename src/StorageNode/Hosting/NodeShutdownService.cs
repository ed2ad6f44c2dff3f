using Microsoft.Extensions.Hosting;
using Slab.Volumes;

namespace Slab.Hosting;

/// <summary>
/// Undoes this daemon's host attachments when it stops. <see cref="StoppingAsync"/> runs before any
/// hosted service stops, so the listeners are still up: an attachment's own NBD connection (nbdfuse
/// on the attach socket) must keep working while its filesystem unmounts and flushes through it. On a
/// cluster node the detaches are then recorded in the cluster state (at most
/// <see cref="ClusterDetachTimeout"/>), while the cluster runtime still runs. <c>cluster</c> is registered only in cluster mode (DI passes null otherwise).
/// </summary>
public sealed class NodeShutdownService(VolumeManager volumes, Cluster.Node.ClusterRuntime? cluster = null) : IHostedLifecycleService
{
    /// <summary>How long a stopping cluster node tries to record its detaches (no quorum: it gives up).</summary>
    public static readonly TimeSpan ClusterDetachTimeout = TimeSpan.FromSeconds(5);

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        await volumes.DetachAllAsync(cancellationToken).ConfigureAwait(false);
        if (cluster is { Registered: true })
        {
            await cluster.RecordShutdownDetachesAsync(ClusterDetachTimeout, cancellationToken).ConfigureAwait(false);
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
