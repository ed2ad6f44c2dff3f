using Slab.Block;
using Slab.Common;

namespace Slab.Store;

// Copies of snapshots made elsewhere: a replica that was rebuilt (or out of the in-sync set when a
// snapshot was cut) gets the snapshots its volume already has from a replica that holds them.
public sealed partial class VolumeStore
{
    /// <summary>
    /// Adds <paramref name="snapshot"/> (id, name, size and creation time as the cluster recorded
    /// them) to this replica as a copy filled by <paramref name="fill"/>: the copy starts as a reflink
    /// of <paramref name="basis"/> (an older snapshot of this replica, so the blocks both share stay
    /// shared) or, without one, as an empty sparse file of the snapshot's size; <c>fill</c> gets the
    /// copy (writable) and the basis (read-only, or null) and writes what differs. The copy is then
    /// made durable and recorded; until it is recorded it is invisible, and a failure or crash leaves
    /// nothing (start-up recovery removes a snapshot file the record does not name). A snapshot with
    /// that id recorded already is a retry: <c>fill</c> is not called.
    /// </summary>
    /// <remarks>The store's lock is held only to start and to record the copy, not while it is filled.</remarks>
    /// <exception cref="SlabException">Too many snapshots or a name taken (ResourceExhausted, AlreadyExists); the basis is not
    /// a snapshot of this replica (NotFound); out of space; the volume was deleted meanwhile (NotFound).</exception>
    public async Task<VolumeRecord> AddSnapshotCopyAsync(
        VolumeRecord volume,
        SnapshotRecord snapshot,
        SnapshotRecord? basis,
        Func<IBlockTarget, IBlockTarget?, CancellationToken, Task> fill,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fill);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(snapshot.SizeBytes, nameof(snapshot));
        string path;
        ReplicaFile? copy = null;
        ReplicaFile? basisFile = null;
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var (current, already) = CurrentForNewSnapshot(volume, snapshot);
            if (already)
            {
                return current;
            }

            path = SnapshotPath(current, snapshot);
            LinuxFile.TryUnlink(path); // an earlier copy that did not finish in this run
            try
            {
                if (basis is not null)
                {
                    var basisRecord = current.FindSnapshotById(basis.Id)
                        ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{current.Name}' here has no snapshot {basis.Id} to base the copy of '{snapshot.Name}' on");
                    var basisPath = SnapshotPath(current, basisRecord);
                    Reflink.CloneFile(basisPath, path);
                    basisFile = ReplicaFile.Open(basisPath, new ReplicaFileOptions { ReadOnly = true });
                }
                else
                {
                    using (File.Create(path))
                    {
                    }
                }

                SparseFiles.Grow(path, snapshot.SizeBytes);
                copy = ReplicaFile.Open(path, ReplicaFileOptions.Default);
            }
            catch (Exception ex)
            {
                copy?.Dispose();
                basisFile?.Dispose();
                LinuxFile.TryUnlink(path);
                throw Classify(ex, $"cannot start a copy of snapshot '{current.Name}@{snapshot.Name}'");
            }
        }
        finally
        {
            _mutation.Release();
        }

        var recorded = false;
        try
        {
            try
            {
                await fill(copy, basisFile, cancellationToken).ConfigureAwait(false);
                await copy.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (BlockTargetException ex)
            {
                throw Classify(ex, $"cannot write the copy of snapshot '{volume.Name}@{snapshot.Name}'");
            }
            finally
            {
                copy.Dispose();
                basisFile?.Dispose();
            }

            await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var (current, already) = CurrentForNewSnapshot(volume, snapshot);
                if (already)
                {
                    return current;
                }

                var saved = SaveLocked(current with { Snapshots = current.Snapshots.Add(snapshot) });
                recorded = true;
                return saved;
            }
            finally
            {
                _mutation.Release();
            }
        }
        finally
        {
            if (!recorded)
            {
                LinuxFile.TryUnlink(path);
            }
        }
    }

    /// <summary>
    /// The ranges of this replica's copy of snapshot <paramref name="snapshotId"/> that may differ from
    /// its copy of <paramref name="basisId"/> (see <see cref="PhysicalExtents.Differing"/>), over the
    /// snapshot's size, in file order. Only those need copying to a replica that holds the basis.
    /// </summary>
    /// <exception cref="SlabException">Either copy is not here (NotFound); the filesystem cannot map them.</exception>
    public IReadOnlyList<(long Offset, long Length)> SnapshotDifferences(VolumeRecord volume, string snapshotId, string basisId)
    {
        var current = Current(volume);
        var snapshot = current.FindSnapshotById(snapshotId)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{current.Name}' here has no copy of snapshot {snapshotId}");
        var basis = current.FindSnapshotById(basisId)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{current.Name}' here has no copy of snapshot {basisId}");
        try
        {
            return PhysicalExtents.Differing(
                PhysicalExtents.Map(SnapshotPath(current, basis), snapshot.SizeBytes),
                PhysicalExtents.Map(SnapshotPath(current, snapshot), snapshot.SizeBytes),
                snapshot.SizeBytes);
        }
        catch (Exception ex)
        {
            throw Classify(ex, $"cannot compare snapshots '{current.Name}@{snapshot.Name}' and '{basis.Name}'");
        }
    }

    /// <summary>The volume as recorded now and whether it has <paramref name="snapshot"/> (by id) already; throws when it cannot take it.</summary>
    private (VolumeRecord Current, bool Recorded) CurrentForNewSnapshot(VolumeRecord volume, SnapshotRecord snapshot)
    {
        var current = Current(volume);
        if (current.FindSnapshotById(snapshot.Id) is not null)
        {
            return (current, true);
        }

        CheckSnapshotCanBeAdded(current, snapshot);
        return (current, false);
    }

    private void CheckSnapshotCanBeAdded(VolumeRecord current, SnapshotRecord snapshot)
    {
        if (current.FindSnapshot(snapshot.Name) is not null)
        {
            throw new SlabException(SlabErrorCode.AlreadyExists, $"volume '{current.Name}' already has a snapshot named '{snapshot.Name}'");
        }

        if (current.Snapshots.Count >= _options.MaximumSnapshotsPerVolume)
        {
            throw new SlabException(SlabErrorCode.ResourceExhausted, $"volume '{current.Name}' has {current.Snapshots.Count} snapshots, the most allowed; delete some first");
        }
    }
}
