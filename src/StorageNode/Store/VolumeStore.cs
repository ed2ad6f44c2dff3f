using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Store;

/// <summary>
/// The node-local volume store over a <see cref="DriveSet"/>.
/// </summary>
/// <remarks>
/// On-drive layout, per volume: <c>slab/volumes/ID/meta.json</c> (the record; writing it is the commit
/// point of every mutation), <c>data</c> (the sparse replica file) and <c>snapshots/SNAPID</c>
/// (reflinks). Crash safety: a volume directory without <c>meta.json</c> is a create that did not
/// commit; a snapshot file the record does not name is a snapshot that did not commit; a directory
/// named <c>.deleting-ID</c> is a delete that committed. <see cref="OpenAsync"/> removes all three.
/// Mutations are serialized by one async lock; reads are lock-free over an immutable index.
/// </remarks>
public sealed partial class VolumeStore : IVolumeStore, IAsyncDisposable
{
    private const string MetaFileName = "meta.json";
    private const string DataFileName = "data";
    private const string SnapshotsDirectoryName = "snapshots";
    private const string DeletingPrefix = ".deleting-";

    private readonly DriveSet _drives;
    private readonly StoreOptions _options;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _mutation = new(1, 1);
    private readonly Lock _indexLock = new();
    private Dictionary<string, VolumeRecord> _byId = new(StringComparer.Ordinal);

    private VolumeStore(DriveSet drives, StoreOptions options, ILogger logger)
    {
        _drives = drives;
        _options = options;
        _logger = logger;
    }

    public StoreOptions Options => _options;

    /// <summary>Prepares the drives and recovers every volume on them.</summary>
    public static async Task<VolumeStore> OpenAsync(StoreOptions options, NodeIdentity node, ILogger logger, CancellationToken cancellationToken)
    {
        var drives = await DriveSet.OpenAsync(options, node, logger, cancellationToken).ConfigureAwait(false);
        try
        {
            var store = new VolumeStore(drives, options, logger);
            store.Recover();
            return store;
        }
        catch
        {
            await drives.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Unmounts the drives; every replica must be closed.</summary>
    public ValueTask DisposeAsync() => _drives.DisposeAsync();

    public PoolStatus GetPoolStatus()
    {
        var drives = new List<DriveStatus>(_drives.Drives.Count);
        long total = 0, used = 0;
        foreach (var drive in _drives.Drives)
        {
            var (driveTotal, driveUsed) = drive.ReadCapacity();
            total += driveTotal;
            used += driveUsed;
            drives.Add(new DriveStatus(drive.Id, drive.Path, drive.MountPath, driveTotal, driveUsed, Online: true));
        }

        long provisioned = 0;
        foreach (var volume in ListVolumes())
        {
            provisioned += volume.SizeBytes;
        }

        var first = _drives.Drives[0].Label;
        return new PoolStatus(
            first.PoolId,
            PoolBenchmark.Classify(first.MeasuredIops),
            total,
            used,
            provisioned,
            _options.OvercommitRatio,
            drives,
            first.MeasuredIops,
            first.MeasuredMegabytesPerSecond);
    }

    public IReadOnlyList<VolumeRecord> ListVolumes()
    {
        lock (_indexLock)
        {
            var list = _byId.Values.ToList();
            list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
            return list;
        }
    }

    public VolumeRecord? FindVolume(string nameOrId)
    {
        lock (_indexLock)
        {
            if (_byId.TryGetValue(nameOrId, out var byId))
            {
                return byId;
            }

            foreach (var volume in _byId.Values)
            {
                if (volume.Name == nameOrId)
                {
                    return volume;
                }
            }

            return null;
        }
    }

    /// <summary>Bytes allocated on the drive by the volume's replica (snapshots not counted).</summary>
    public long AllocatedBytes(VolumeRecord volume)
    {
        var info = new FileInfo(DataPath(volume));
        return info.Exists ? SparseFiles.AllocatedBytes(info.FullName) : 0;
    }

    public async Task<VolumeRecord> CreateVolumeAsync(VolumeRecord draft, ReplicaSource? source, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (FindVolume(draft.Name) is not null)
            {
                throw new SlabException(SlabErrorCode.AlreadyExists, $"a volume named '{draft.Name}' already exists");
            }

            EnsureCapacity(draft.SizeBytes);
            var drive = source is { } from ? DriveOf(from.Volume) : DriveWithMostFreeSpace();
            var volume = draft with { DriveId = drive.Id };
            var directory = VolumeDirectory(volume);
            Directory.CreateDirectory(Path.Combine(directory, SnapshotsDirectoryName));
            try
            {
                var dataPath = Path.Combine(directory, DataFileName);
                if (source is { } origin)
                {
                    var originPath = origin.Snapshot is { } snapshot ? SnapshotPath(origin.Volume, snapshot) : DataPath(origin.Volume);
                    Reflink.CloneFile(originPath, dataPath);
                    SparseFiles.Grow(dataPath, volume.SizeBytes);
                }
                else
                {
                    ReplicaFile.Create(dataPath, volume.SizeBytes).Dispose();
                }

                DurableFile.SyncDirectory(directory);
                DurableFile.WriteJson(Path.Combine(directory, MetaFileName), volume, StoreJsonContext.Default.VolumeRecord);
            }
            catch (Exception ex)
            {
                TryDeleteDirectory(directory);
                throw Classify(ex, $"cannot create volume '{draft.Name}'");
            }

            Publish(volume);
            var sourceName = source is { } cloned ? cloned.ToString() : "-";
            LogVolumeCreated(_logger, volume.Name, volume.Id, volume.SizeBytes, sourceName);
            return volume;
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>Saves the filesystem flags of <paramref name="flags"/> on this node's record of the same volume; returns the record as saved.</summary>
    public Task<VolumeRecord> SaveFilesystemFlagsAsync(VolumeRecord local, VolumeRecord flags, CancellationToken cancellationToken)
        => SaveVolumeAsync(local with { Formatted = flags.Formatted, FilesystemGrowPending = flags.FilesystemGrowPending }, cancellationToken);

    public async Task<VolumeRecord> SaveVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return SaveLocked(volume);
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>Grows the replica file and then commits the new size.</summary>
    /// <param name="growReplica">Grows the volume's open replica (so I/O sees the new size at once);
    /// called after the capacity check, before the new size is committed.</param>
    public async Task<VolumeRecord> GrowVolumeAsync(VolumeRecord volume, long newSizeBytes, Action<long> growReplica, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Current(volume);
            EnsureCapacity(newSizeBytes - current.SizeBytes);
            try
            {
                growReplica(newSizeBytes);
            }
            catch (Exception ex)
            {
                throw Classify(ex, $"cannot grow volume '{current.Name}'");
            }

            return SaveLocked(current with { SizeBytes = newSizeBytes });
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task DeleteVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Current(volume);
            var directory = VolumeDirectory(current);
            var tomb = Path.Combine(Path.GetDirectoryName(directory)!, DeletingPrefix + current.Id);
            Directory.Move(directory, tomb);
            DurableFile.SyncDirectory(Path.GetDirectoryName(directory)!);
            lock (_indexLock)
            {
                var next = new Dictionary<string, VolumeRecord>(_byId, StringComparer.Ordinal);
                next.Remove(current.Id);
                _byId = next;
            }

            TryDeleteDirectory(tomb);
            LogVolumeDeleted(_logger, current.Name, current.Id);
        }
        finally
        {
            _mutation.Release();
        }
    }

    public ReplicaFile OpenReplica(VolumeRecord volume)
        => OpenFile(DataPath(volume), readOnly: false, $"volume '{volume.Name}'");

    public ReplicaFile OpenSnapshot(VolumeRecord volume, SnapshotRecord snapshot)
        => OpenFile(SnapshotPath(volume, snapshot), readOnly: true, $"snapshot '{volume.Name}@{snapshot.Name}'");

    public Task<VolumeRecord> CreateSnapshotAsync(VolumeRecord volume, string snapshotName, CancellationToken cancellationToken)
        => CreateSnapshotAsync(volume, new SnapshotRecord { Id = Guid.NewGuid().ToString("N"), Name = snapshotName, SizeBytes = volume.SizeBytes, Created = DateTimeOffset.UtcNow }, cancellationToken);

    public async Task<VolumeRecord> CreateSnapshotAsync(VolumeRecord volume, SnapshotRecord snapshot, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var (current, taken) = CurrentForNewSnapshot(volume, snapshot);
            if (taken)
            {
                return current; // a retry
            }

            snapshot = snapshot with { SizeBytes = current.SizeBytes };
            var path = SnapshotPath(current, snapshot);
            try
            {
                Reflink.CloneFile(DataPath(current), path);
                return SaveLocked(current with { Snapshots = current.Snapshots.Add(snapshot) });
            }
            catch (Exception ex)
            {
                File.Delete(path);
                throw Classify(ex, $"cannot snapshot volume '{current.Name}'");
            }
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<VolumeRecord> DeleteSnapshotAsync(VolumeRecord volume, SnapshotRecord snapshot, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Current(volume);
            var saved = SaveLocked(current with { Snapshots = current.Snapshots.RemoveAll(s => s.Id == snapshot.Id) });
            File.Delete(SnapshotPath(current, snapshot));
            return saved;
        }
        finally
        {
            _mutation.Release();
        }
    }

    public async Task<VolumeRecord> RestoreSnapshotAsync(VolumeRecord volume, SnapshotRecord snapshot, CancellationToken cancellationToken)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var current = Current(volume);
            try
            {
                Reflink.CloneOver(SnapshotPath(current, snapshot), DataPath(current));
                SparseFiles.Grow(DataPath(current), current.SizeBytes);
            }
            catch (Exception ex)
            {
                throw Classify(ex, $"cannot restore volume '{current.Name}' from snapshot '{snapshot.Name}'");
            }

            LogVolumeRestored(_logger, current.Name, snapshot.Name);
            return current;
        }
        finally
        {
            _mutation.Release();
        }
    }

    private VolumeRecord Current(VolumeRecord volume)
    {
        lock (_indexLock)
        {
            return _byId.TryGetValue(volume.Id, out var current)
                ? current
                : throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' no longer exists");
        }
    }

    private VolumeRecord SaveLocked(VolumeRecord volume)
    {
        DurableFile.WriteJson(Path.Combine(VolumeDirectory(volume), MetaFileName), volume, StoreJsonContext.Default.VolumeRecord);
        Publish(volume);
        return volume;
    }

    private void Publish(VolumeRecord volume)
    {
        lock (_indexLock)
        {
            _byId = new Dictionary<string, VolumeRecord>(_byId, StringComparer.Ordinal) { [volume.Id] = volume };
        }
    }

    /// <summary>Throws ResourceExhausted unless the pool can provision <paramref name="additionalBytes"/> more.</summary>
    private void EnsureCapacity(long additionalBytes)
    {
        if (additionalBytes <= 0)
        {
            return;
        }

        var pool = GetPoolStatus();
        if (pool.UsedFraction >= _options.FullFraction)
        {
            throw new SlabException(
                SlabErrorCode.ResourceExhausted,
                $"pool {pool.Id} is full: {Sizes.Human(pool.UsedBytes)} of {Sizes.Human(pool.TotalBytes)} used ({pool.UsedFraction:P0}); free space or add a drive");
        }

        var limit = (long)(pool.TotalBytes * _options.OvercommitRatio);
        if (pool.ProvisionedBytes + additionalBytes > limit)
        {
            throw new SlabException(
                SlabErrorCode.ResourceExhausted,
                $"pool {pool.Id} cannot provision {Sizes.Human(additionalBytes)} more: {Sizes.Human(pool.ProvisionedBytes)} of at most {Sizes.Human(limit)} is provisioned ({Sizes.Human(pool.TotalBytes)} x overcommit ratio {_options.OvercommitRatio})");
        }
    }

    private Drive DriveWithMostFreeSpace()
    {
        Drive? best = null;
        long bestFree = -1;
        foreach (var drive in _drives.Drives)
        {
            var (total, used) = drive.ReadCapacity();
            if (total - used > bestFree)
            {
                best = drive;
                bestFree = total - used;
            }
        }

        return best!;
    }

    private Drive DriveOf(VolumeRecord volume)
        => _drives.Find(volume.DriveId)
           ?? throw new SlabException(SlabErrorCode.Internal, $"drive {volume.DriveId} of volume '{volume.Name}' is not present");

    private string VolumeDirectory(VolumeRecord volume) => Path.Combine(DriveOf(volume).VolumesDirectory, volume.Id);

    private string DataPath(VolumeRecord volume) => Path.Combine(VolumeDirectory(volume), DataFileName);

    private string SnapshotPath(VolumeRecord volume, SnapshotRecord snapshot)
        => Path.Combine(VolumeDirectory(volume), SnapshotsDirectoryName, snapshot.Id);

    private static ReplicaFile OpenFile(string path, bool readOnly, string what)
    {
        try
        {
            return ReplicaFile.Open(path, new ReplicaFileOptions { ReadOnly = readOnly });
        }
        catch (Exception ex)
        {
            throw Classify(ex, $"cannot open {what}");
        }
    }

    private static SlabException Classify(Exception ex, string what) => ex switch
    {
        SlabException slab => slab,
        Block.BlockTargetException { Error: Block.BlockError.NoSpace } => new SlabException(SlabErrorCode.ResourceExhausted, $"{what}: the pool is out of space", ex),
        IOException io when io.HResult == 28 || (io.HResult & 0xFFFF) == 28 => new SlabException(SlabErrorCode.ResourceExhausted, $"{what}: the pool is out of space", ex),
        _ => new SlabException(SlabErrorCode.Internal, $"{what}: {ex.Message}", ex),
    };

    private void TryDeleteDirectory(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
                DurableFile.SyncDirectory(Path.GetDirectoryName(directory)!);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogCleanupFailed(_logger, directory, ex.Message);
        }
    }
}
