using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

public sealed partial class VolumeManager
{
    /// <summary>
    /// Takes a crash-consistent snapshot: writes to the open volume are drained and held, the replica
    /// is flushed and reflinked, then writes resume. Every write acknowledged before the call is in
    /// the snapshot.
    /// </summary>
    public async Task<(VolumeRecord Volume, SnapshotRecord Snapshot)> CreateSnapshotAsync(string volumeReference, string snapshotName, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        VolumeNames.Validate(snapshotName, "snapshot");
        var pause = await PauseIfOpenAsync(volume, cancellationToken).ConfigureAwait(false);
        try
        {
            await FlushIfOpenAsync(volume, cancellationToken).ConfigureAwait(false);
            var updated = await _store.CreateSnapshotAsync(volume, snapshotName, cancellationToken).ConfigureAwait(false);
            return (updated, updated.FindSnapshot(snapshotName)!);
        }
        finally
        {
            if (pause is not null)
            {
                await pause.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Snapshots every volume under <paramref name="snapshotName"/> at one write boundary: the writes
    /// of all of them are held (in volume-id order) and flushed before any is cut. All or nothing:
    /// on a failure the snapshots already made are deleted. Returns them in the order given.
    /// </summary>
    public async Task<IReadOnlyList<(VolumeRecord Volume, SnapshotRecord Snapshot)>> CreateGroupSnapshotAsync(
        IReadOnlyList<string> volumeReferences, string snapshotName, CancellationToken cancellationToken)
    {
        VolumeNames.Validate(snapshotName, "snapshot");
        GroupSnapshotRules.CheckCount(volumeReferences.Count);
        var group = volumeReferences.Select(Require).ToList();
        GroupSnapshotRules.CheckMembers(group, snapshotName, v => v.Id, v => v.Name, (v, n) => v.FindSnapshot(n) is { } s && s.Name == n);

        var pauses = new List<IAsyncDisposable>();
        var made = new List<(VolumeRecord Volume, SnapshotRecord Snapshot)>();
        try
        {
            foreach (var volume in group.OrderBy(v => v.Id, StringComparer.Ordinal))
            {
                if (await PauseIfOpenAsync(volume, cancellationToken).ConfigureAwait(false) is { } pause)
                {
                    pauses.Add(pause);
                }
            }

            foreach (var volume in group)
            {
                await FlushIfOpenAsync(volume, cancellationToken).ConfigureAwait(false);
            }

            foreach (var volume in group)
            {
                var updated = await _store.CreateSnapshotAsync(Require(volume.Id), snapshotName, cancellationToken).ConfigureAwait(false);
                made.Add((updated, updated.FindSnapshot(snapshotName)!));
            }

            return made;
        }
        catch
        {
            foreach (var (volume, snapshot) in made)
            {
                await _store.DeleteSnapshotAsync(Require(volume.Id), snapshot, CancellationToken.None).ConfigureAwait(false);
            }

            throw;
        }
        finally
        {
            for (var i = pauses.Count - 1; i >= 0; i--)
            {
                await pauses[i].DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    public IReadOnlyList<SnapshotRecord> ListSnapshots(string volumeReference) => Require(volumeReference).Snapshots;

    public async Task DeleteSnapshotAsync(string volumeReference, string snapshotName, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        var snapshot = RequireSnapshot(volume, snapshotName);
        await _store.DeleteSnapshotAsync(volume, snapshot, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Replaces the volume's data with the snapshot's. The volume must be detached and not open.</summary>
    public async Task<VolumeView> RestoreAsync(string volumeReference, string snapshotName, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        var snapshot = RequireSnapshot(volume, snapshotName);
        if (GetAttachment(volume.Id) is { } attachment)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is attached on {attachment.NodeName}; detach it before restoring");
        }

        await using (TakeExclusive(volume, "restore").ConfigureAwait(false))
        {
            volume = await _store.RestoreSnapshotAsync(volume, snapshot, cancellationToken).ConfigureAwait(false);
        }

        return View(volume);
    }
}
