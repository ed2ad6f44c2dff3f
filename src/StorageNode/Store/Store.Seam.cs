namespace Slab.Store;

// The node-local store: drives pooled into one pool, replicas as sparse files on them, snapshots and
// clones as reflinks, metadata written crash-safely next to the data. The volume layer uses it
// through IVolumeStore; ReplicaFile is the block target for one replica or snapshot.

/// <summary>IO priority of a pool (measured) or requested by a volume.</summary>
public enum IoPriority
{
    High,
    Medium,
    Low,
}

/// <summary>
/// The node-local volume store. Thread-safe; every mutation is durable (fsynced) when its task
/// completes, and after a crash at any instant <see cref="VolumeStore.OpenAsync"/> finds either the
/// state before or the state after each mutation, never a half of it.
/// </summary>
public interface IVolumeStore
{
    /// <summary>How the store was opened (limits such as snapshots per volume).</summary>
    StoreOptions Options { get; }

    /// <summary>The one pool of this node: drives and capacity, read now.</summary>
    PoolStatus GetPoolStatus();

    /// <summary>Bytes allocated on the drive by the volume's replica (snapshots not counted).</summary>
    long AllocatedBytes(VolumeRecord volume);

    IReadOnlyList<VolumeRecord> ListVolumes();

    /// <summary>Finds a volume by name or id; null when none.</summary>
    VolumeRecord? FindVolume(string nameOrId);

    /// <summary>Creates an empty thin volume, or a reflink copy of <paramref name="source"/> when given.</summary>
    Task<VolumeRecord> CreateVolumeAsync(VolumeRecord draft, ReplicaSource? source, CancellationToken cancellationToken);

    /// <summary>Persists changed metadata (labels, formatted flag, size after a grow).</summary>
    Task<VolumeRecord> SaveVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken);

    /// <summary>Saves the filesystem flags of <paramref name="flags"/> on this node's record <paramref name="local"/> of the same volume; returns the record as saved.</summary>
    Task<VolumeRecord> SaveFilesystemFlagsAsync(VolumeRecord local, VolumeRecord flags, CancellationToken cancellationToken);

    /// <summary>
    /// Grows the replica to <paramref name="newSizeBytes"/> and commits the new size;
    /// <paramref name="growReplica"/> grows the open replica (so I/O sees the new size at once), after
    /// the capacity check and before the commit.
    /// </summary>
    Task<VolumeRecord> GrowVolumeAsync(VolumeRecord volume, long newSizeBytes, Action<long> growReplica, CancellationToken cancellationToken);

    Task DeleteVolumeAsync(VolumeRecord volume, CancellationToken cancellationToken);

    /// <summary>Opens the volume's replica file read-write.</summary>
    ReplicaFile OpenReplica(VolumeRecord volume);

    /// <summary>Opens a snapshot read-only.</summary>
    ReplicaFile OpenSnapshot(VolumeRecord volume, SnapshotRecord snapshot);

    /// <summary>Reflinks the replica into a new snapshot; the caller has drained writes.</summary>
    Task<VolumeRecord> CreateSnapshotAsync(VolumeRecord volume, string snapshotName, CancellationToken cancellationToken);

    /// <summary>
    /// Reflinks the replica into <paramref name="snapshot"/> (its id chosen by the caller, e.g. the
    /// cluster's; its size taken from the replica); a snapshot with that id already taken is a retry
    /// and changes nothing. The caller has drained writes.
    /// </summary>
    Task<VolumeRecord> CreateSnapshotAsync(VolumeRecord volume, SnapshotRecord snapshot, CancellationToken cancellationToken);

    /// <summary>
    /// Adds a copy of a snapshot taken elsewhere, filled by <paramref name="fill"/> from a reflink of
    /// the older copy <paramref name="basis"/> (or from empty); recorded only once filled and durable.
    /// See <see cref="VolumeStore.AddSnapshotCopyAsync"/>.
    /// </summary>
    Task<VolumeRecord> AddSnapshotCopyAsync(
        VolumeRecord volume,
        SnapshotRecord snapshot,
        SnapshotRecord? basis,
        Func<Block.IBlockTarget, Block.IBlockTarget?, CancellationToken, Task> fill,
        CancellationToken cancellationToken);

    /// <summary>The ranges of snapshot <paramref name="snapshotId"/> that may differ from the older <paramref name="basisId"/> (both copies here); see <see cref="VolumeStore.SnapshotDifferences"/>.</summary>
    IReadOnlyList<(long Offset, long Length)> SnapshotDifferences(VolumeRecord volume, string snapshotId, string basisId);

    Task<VolumeRecord> DeleteSnapshotAsync(VolumeRecord volume, SnapshotRecord snapshot, CancellationToken cancellationToken);

    /// <summary>Replaces the replica's contents with the snapshot's (atomically); the replica must be closed.</summary>
    Task<VolumeRecord> RestoreSnapshotAsync(VolumeRecord volume, SnapshotRecord snapshot, CancellationToken cancellationToken);
}

/// <summary>Where a clone's data comes from: a volume's replica or one of its snapshots.</summary>
public readonly record struct ReplicaSource(VolumeRecord Volume, SnapshotRecord? Snapshot)
{
    public override string ToString() => Snapshot is null ? Volume.Name : $"{Volume.Name}@{Snapshot.Name}";
}

/// <summary>A drive of the pool as last seen.</summary>
public sealed record DriveStatus(string Id, string Path, string MountPath, long TotalBytes, long UsedBytes, bool Online);

/// <summary>The pool's capacity now. Bytes throughout.</summary>
public sealed record PoolStatus(
    string Id,
    IoPriority IoPriority,
    long TotalBytes,
    long UsedBytes,
    long ProvisionedBytes,
    double OvercommitRatio,
    IReadOnlyList<DriveStatus> Drives,
    double MeasuredIops,
    double MeasuredMegabytesPerSecond)
{
    /// <summary>Used share of total, 0..1.</summary>
    public double UsedFraction => TotalBytes == 0 ? 1 : (double)UsedBytes / TotalBytes;
}
