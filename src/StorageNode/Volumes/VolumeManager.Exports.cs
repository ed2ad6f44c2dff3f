using Slab.Block;
using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

public sealed partial class VolumeManager : IExportCatalog
{
    private readonly Lock _openLock = new();
    private readonly Dictionary<string, OpenVolume> _open = new(StringComparer.Ordinal);
    private readonly HashSet<string> _exclusive = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LocalReplica> _replicas = new(StringComparer.Ordinal);

    /// <summary>Confirms epochs above a local replica's (cluster mode); null on a single node.</summary>
    public IEpochSource? Epochs { get; set; }

    public IReadOnlyList<ExportDescription> ListExports()
    {
        var exports = new List<ExportDescription>();
        foreach (var volume in _store.ListVolumes())
        {
            exports.Add(new ExportDescription(
                volume.Name,
                volume.ClusterId is null
                    ? $"Slab volume {volume.Name} ({Sizes.Human(volume.SizeBytes)})"
                    : $"replica of cluster volume {volume.Name} ({Sizes.Human(volume.SizeBytes)}; served only while attached on this node)"));
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

        if (volume.ClusterId is not null && GetAttachment(volume.Id) is null)
        {
            // A second controller at the same epoch would write past the attached one's fencing and dirty maps.
            throw new SlabException(
                SlabErrorCode.FailedPrecondition,
                $"volume '{volume.Name}' is a cluster volume: this node serves it over NBD only while it is attached here ('slabctl host attach {volume.Name}')");
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
                open = new OpenVolume(CreateController(volume));
                _open.Add(volume.Id, open);
            }
            else if (open.Controller is null)
            {
                open.Controller = CreateController(volume);
            }

            open.Leases++;
            return new VolumeLease(this, volume.Id, open);
        }
    }

    /// <summary>
    /// Opens this node's replica of <paramref name="volume"/> (shared by the controller here and the
    /// replica server) until the lease is disposed. Throws when the volume is busy (delete, restore).
    /// </summary>
    internal LocalReplicaLease OpenLocalReplica(VolumeRecord volume)
    {
        lock (_openLock)
        {
            ThrowIfExclusive(volume);
            if (!_replicas.TryGetValue(volume.Id, out var replica))
            {
                var current = _store.FindVolume(volume.Id) ?? volume;
                replica = new LocalReplica(volume.Id, _store.OpenReplica(current), current.Epoch, (epoch, ct) => PersistEpochAsync(volume.Id, epoch, ct), Epochs);
                _replicas.Add(volume.Id, replica);
            }

            replica.Leases++;
            return new LocalReplicaLease(this, replica);
        }
    }

    /// <summary>This node's open replica of the volume, if one is open.</summary>
    private LocalReplica? FindOpenReplica(string volumeId)
    {
        lock (_openLock)
        {
            return _replicas.GetValueOrDefault(volumeId);
        }
    }

    /// <summary>Records a raised epoch with the replica (durable before the replica admits it).</summary>
    private async Task PersistEpochAsync(string volumeId, long epoch, CancellationToken cancellationToken)
    {
        if (_store.FindVolume(volumeId) is { } record && record.Epoch < epoch)
        {
            await _store.SaveVolumeAsync(record with { Epoch = epoch }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Raises the epoch this node's replica of <paramref name="volumeId"/> accepts to what the control
    /// plane committed: drains older requests now if it is open, else persists it for the next open.
    /// False (nothing done) when the replica accepts that epoch already.
    /// </summary>
    public async Task<bool> FenceReplicaAsync(string volumeId, long epoch, CancellationToken cancellationToken)
    {
        if (FindOpenReplica(volumeId) is { } open)
        {
            if (open.Gate.Epoch >= epoch)
            {
                return false;
            }

            await open.RaiseAsync(epoch, cancellationToken).ConfigureAwait(false);
            return true;
        }

        if (_store.FindVolume(volumeId) is not { } record || record.Epoch >= epoch)
        {
            return false;
        }

        await PersistEpochAsync(volumeId, epoch, cancellationToken).ConfigureAwait(false);
        return true;
    }

    private void ReleaseReplica(LocalReplica replica)
    {
        lock (_openLock)
        {
            if (--replica.Leases > 0)
            {
                return;
            }

            _replicas.Remove(replica.VolumeId);
        }

        replica.File.Dispose();
    }

    /// <summary>The controller of a volume opened here: its local replica alone, or (cluster) its whole replica set.</summary>
    private VolumeController CreateController(VolumeRecord volume)
    {
        if (ClusterVolumes is { } cluster && (volume.ClusterId is not null || _store.FindVolume(volume.Id) is null))
        {
            var known = _remote.GetValueOrDefault(volume.Id) ?? volume;
            return cluster.OpenController(known, () => OpenLocalReplicaTarget(known, epoch: 0), IoSettingsFor(known.Id, known.Name, known.Limits));
        }

        return new VolumeController(
            volume.Id,
            volume.Name,
            volume.SizeBytes,
            volume.Epoch,
            [new ReplicaMember(_options.NodeId, _options.NodeName, OpenLocalReplicaTarget(volume, volume.Epoch), ReplicaMode.InSync, IsLocal: true)],
            authority: null,
            _logger,
            io: IoSettingsFor(volume.Id, volume.Name, volume.Limits));
    }

    private VolumeIoSettings IoSettingsFor(string volumeId, string volumeName, IoLimits limits)
        => new(_time, limits, IoObservers?.ObserverFor(volumeId, volumeName));

    /// <summary>This node's replica of the volume as a controller's target, starting at <paramref name="epoch"/> (the controller sets its own).</summary>
    private IReplicaTarget OpenLocalReplicaTarget(VolumeRecord volume, long epoch)
    {
        var lease = OpenLocalReplica(volume);
        return new LocalReplicaTarget(lease.Replica, lease, epoch);
    }

    /// <summary>
    /// Opens this node's copy of a snapshot read-only: an NBD export of <c>VOL@SNAP</c>, or the source
    /// another node copies it from (the replication server serves it). It keeps the volume in use (no
    /// restore or delete here) until disposed.
    /// </summary>
    /// <exception cref="SlabException">The volume is being deleted or restored here; the file cannot be opened.</exception>
    internal SnapshotLease OpenSnapshotLease(VolumeRecord volume, SnapshotRecord snapshot)
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

    /// <summary>The controller of the volume if it is open on this node (attached or exported here).</summary>
    public VolumeController? ControllerOf(string volumeId) => OpenController(volumeId);

    /// <summary>Every controller open on this node now (for metrics).</summary>
    public IReadOnlyList<VolumeController> OpenControllers()
    {
        lock (_openLock)
        {
            return [.. _open.Values.Select(o => o.Controller).OfType<VolumeController>()];
        }
    }

    /// <summary>Gives the controllers this node opens their latency observers (the metrics); null = none. Set before serving.</summary>
    public IVolumeIoObserverSource? IoObservers { get; set; }

    /// <summary>Changes the QoS limits of the volume's controller if it is open here (online).</summary>
    public void ApplyLimits(string volumeId, IoLimits limits) => OpenController(volumeId)?.SetLimits(limits);

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

            if (_replicas.ContainsKey(volume.Id))
            {
                throw new SlabException(
                    SlabErrorCode.FailedPrecondition,
                    $"cannot {operation} volume '{volume.Name}': its replica here is in use by a controller on another node; detach it there first");
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
        // A lease keeps the replica open while it grows, so nothing can open it with the old size;
        // a controller open here widens to the new size with it.
        using (var lease = OpenLocalReplica(volume))
        {
            volume = await _store.GrowVolumeAsync(
                volume,
                newSizeBytes,
                size =>
                {
                    lease.Replica.File.Grow(size);
                    OpenController(volume.Id)?.Grow(size);
                },
                cancellationToken).ConfigureAwait(false);
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

    /// <summary>Keeps this node's replica of one volume open until disposed.</summary>
    internal sealed class LocalReplicaLease(VolumeManager owner, LocalReplica replica) : IDisposable
    {
        private int _disposed;

        public LocalReplica Replica { get; } = replica;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.ReleaseReplica(Replica);
            }
        }
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

    /// <summary>A snapshot open read-only (an NBD export, or a copy's source served to another node); the volume counts as in use until disposed.</summary>
    internal sealed class SnapshotLease(VolumeManager owner, string volumeId, OpenVolume open, ReplicaFile file) : IBlockTargetLease, IDisposable
    {
        private int _disposed;

        public IBlockTarget Target => file;

        public string VolumeId => volumeId;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                file.Dispose();
                owner.Release(volumeId, open, snapshot: true);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
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
