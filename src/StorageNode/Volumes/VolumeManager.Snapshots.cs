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
