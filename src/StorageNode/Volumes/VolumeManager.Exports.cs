using Slab.Block;
using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

public sealed partial class VolumeManager : IExportCatalog
{
    private readonly Lock _openLock = new();
    private readonly Dictionary<string, OpenVolume> _open = new(StringComparer.Ordinal);
    private readonly HashSet<string> _exclusive = new(StringComparer.Ordinal);

    public IReadOnlyList<ExportDescription> ListExports()
    {
        var exports = new List<ExportDescription>();
        foreach (var volume in _store.ListVolumes())
        {
            exports.Add(new ExportDescription(volume.Name, $"Slab volume {volume.Name} ({Sizes.Human(volume.SizeBytes)})"));
            foreach (var snapshot in volume.Snapshots)
            {
                exports.Add(new ExportDescription($"{volume.Name}@{snapshot.Name}", $"read-only snapshot {snapshot.Name} of {volume.Name}"));
            }
        }

        return exports;
    }

    public ValueTask<IBlockTargetLease?> OpenExportAsync(string name, CancellationToken cancellationToken)
    {
        var (volumeName, snapshotName) = VolumeNames.Split(name);
        var volume = _store.FindVolume(volumeName);
        if (volume is null)
        {
            return ValueTask.FromResult<IBlockTargetLease?>(null);
        }

        if (snapshotName is not null)
        {
            var snapshot = volume.FindSnapshot(snapshotName);
            return ValueTask.FromResult<IBlockTargetLease?>(snapshot is null ? null : OpenSnapshotLease(volume, snapshot));
        }

        return ValueTask.FromResult<IBlockTargetLease?>(OpenVolumeLease(volume));
    }

    /// <summary>Opens the volume for I/O; the lease keeps it open. Throws when the volume is busy (delete, restore).</summary>
    internal VolumeLease OpenVolumeLease(VolumeRecord volume)
    {
        lock (_openLock)
        {
            ThrowIfExclusive(volume);
            if (!_open.TryGetValue(volume.Id, out var open))
            {
                open = new OpenVolume(new VolumeController(volume, OpenReplicaTarget(volume)));
                _open.Add(volume.Id, open);
            }

            open.Leases++;
            return new VolumeLease(this, volume.Id, open);
        }
    }

    private SnapshotLease OpenSnapshotLease(VolumeRecord volume, SnapshotRecord snapshot)
    {
        lock (_openLock)
        {
            ThrowIfExclusive(volume);
            var file = _store.OpenSnapshot(volume, snapshot);
            if (!_open.TryGetValue(volume.Id, out var open))
            {
                open = new OpenVolume(controller: null);
                _open.Add(volume.Id, open);
            }

            open.SnapshotLeases++;
            return new SnapshotLease(this, volume.Id, open, file);
        }
    }

    private void Release(string volumeId, OpenVolume open, bool snapshot)
    {
        VolumeController? toClose = null;
        lock (_openLock)
        {
            if (snapshot)
            {
                open.SnapshotLeases--;
            }
            else if (--open.Leases == 0)
            {
                toClose = open.Controller;
                open.Controller = null;
            }

            if (open.Leases == 0 && open.SnapshotLeases == 0)
            {
                _open.Remove(volumeId);
            }
        }

        toClose?.Dispose();
    }

    private int OpenConnectionCount(string volumeId)
    {
        lock (_openLock)
        {
            return _open.TryGetValue(volumeId, out var open) ? open.Leases + open.SnapshotLeases : 0;
        }
    }

    private VolumeController? OpenController(string volumeId)
    {
        lock (_openLock)
        {
            return _open.TryGetValue(volumeId, out var open) ? open.Controller : null;
        }
    }

    /// <summary>
    /// Marks the volume busy so no export can open it, after checking nothing has it open.
    /// Disposing the result clears the mark.
    /// </summary>
    private Exclusive TakeExclusive(VolumeRecord volume, string operation)
    {
        lock (_openLock)
        {
            ThrowIfExclusive(volume);
            if (_open.TryGetValue(volume.Id, out var open))
            {
                throw new SlabException(
                    SlabErrorCode.FailedPrecondition,
                    $"cannot {operation} volume '{volume.Name}': it is in use by {open.Leases + open.SnapshotLeases} NBD connection(s); disconnect them first");
            }

            _exclusive.Add(volume.Id);
            return new Exclusive(this, volume.Id);
        }
    }

    private void ThrowIfExclusive(VolumeRecord volume)
    {
        if (_exclusive.Contains(volume.Id))
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is busy (being deleted or restored)");
        }
    }

    private async Task<IAsyncDisposable?> PauseIfOpenAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        var controller = OpenController(volume.Id);
        return controller is null ? null : await controller.PauseWritesAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task FlushIfOpenAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        if (OpenController(volume.Id) is { } controller)
        {
            await controller.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<VolumeRecord> GrowAsync(VolumeRecord volume, long newSizeBytes, CancellationToken cancellationToken)
    {
        // A lease keeps the replica open while it grows, so no export can open it with the old size.
        var lease = OpenVolumeLease(volume);
        await using (lease.ConfigureAwait(false))
        {
            volume = await _store.GrowVolumeAsync(volume, newSizeBytes, lease.Controller.Grow, cancellationToken).ConfigureAwait(false);
        }

        if (GetAttachment(volume.Id) is not null)
        {
            volume = await GrowAttachedDeviceAsync(volume, cancellationToken).ConfigureAwait(false);
        }
        else if (volume.Formatted)
        {
            // Not mounted here: the filesystem grows at its next mount.
            volume = await _store.SaveVolumeAsync(volume with { FilesystemGrowPending = true }, cancellationToken).ConfigureAwait(false);
        }

        return volume;
    }

    /// <summary>Flushes and closes every open volume (shutdown).</summary>
    internal async Task CloseAllAsync(CancellationToken cancellationToken)
    {
        List<VolumeController> controllers;
        lock (_openLock)
        {
            controllers = [.. _open.Values.Select(o => o.Controller).OfType<VolumeController>()];
            foreach (var open in _open.Values)
            {
                open.Controller = null;
            }
        }

        foreach (var controller in controllers)
        {
            try
            {
                await controller.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                controller.Dispose();
            }
        }
    }

    internal sealed class OpenVolume(VolumeController? controller)
    {
        public VolumeController? Controller { get; set; } = controller;

        public int Leases { get; set; }

        public int SnapshotLeases { get; set; }
    }

    /// <summary>Keeps one volume open for I/O until disposed.</summary>
    internal sealed class VolumeLease(VolumeManager owner, string volumeId, OpenVolume open) : IBlockTargetLease
    {
        private int _disposed;

        public IBlockTarget Target => Controller;

        public VolumeController Controller { get; } = open.Controller!;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Release(volumeId, open, snapshot: false);
            }

            return ValueTask.CompletedTask;
        }
    }

    private sealed class SnapshotLease(VolumeManager owner, string volumeId, OpenVolume open, ReplicaFile file) : IBlockTargetLease
    {
        private int _disposed;

        public IBlockTarget Target => file;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                file.Dispose();
                owner.Release(volumeId, open, snapshot: true);
            }

            return ValueTask.CompletedTask;
        }
    }

    private sealed class Exclusive(VolumeManager owner, string volumeId) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            lock (owner._openLock)
            {
                owner._exclusive.Remove(volumeId);
            }

            return ValueTask.CompletedTask;
        }
    }
}
