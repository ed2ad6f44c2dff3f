using Microsoft.Extensions.Hosting;
using Slab.Volumes;

namespace Slab.Hosting;

/// <summary>
/// Undoes this daemon's host attachments when it stops. <see cref="StoppingAsync"/> runs before any
/// hosted service stops, so the listeners are still up: an attachment's own NBD connection (nbdfuse
/// on the attach socket) must keep working while its filesystem unmounts and flushes through it.
/// </summary>
public sealed class NodeShutdownService(VolumeManager volumes) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => volumes.DetachAllAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
