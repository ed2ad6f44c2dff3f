using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Cluster.Node;

// Snapshot copies for replicas that lack them. A snapshot is cut on the replicas in sync at the
// time; a replica rebuilt later (a replacement, ha-update up) or out of the set then has no copy,
// so losing the snapshot's holders would lose the snapshot while the volume lives on. This node's
// replica pulls each committed snapshot it lacks, oldest first, from a holder that is online (over
// the replication protocol, the holder serving its copy read-only), into a reflink of its own next
// older copy (only what differs is written), and records itself as a holder in Raft.
public sealed partial class ClusterRuntime
{
    /// <summary>Snapshot copies under way, by volume id (one task per volume, copying its snapshots in turn).</summary>
    private readonly ConcurrentDictionary<string, Task> _snapshotCopies = new(StringComparer.Ordinal);

    /// <summary>Snapshots whose lack of an online holder was logged (once, not every pass).</summary>
    private readonly ConcurrentDictionary<string, byte> _noHolderWarned = new(StringComparer.Ordinal);

    /// <summary>Opens other nodes' snapshot copies for reading; set by slabd before the runtime starts.</summary>
    internal ClusterVolumeSource? VolumeSource { get; set; }

    /// <summary>Snapshots of <paramref name="volume"/> committed in the cluster that this node's replica (this incarnation) does not hold.</summary>
    internal static IEnumerable<SnapshotInfo> SnapshotsMissingOn(VolumeInfo volume, ReplicaInfo replica)
    {
        var self = new SnapshotHolder(replica.NodeId, replica.Incarnation);
        return volume.Snapshots.Where(s => !s.Pending && !s.Holders.Contains(self)).OrderBy(s => s.Created);
    }

    /// <summary>Starts copying the snapshots this node's replica of <paramref name="volume"/> lacks, unless a copy for it is under way.</summary>
    private void CopyMissingSnapshots(VolumeInfo volume)
    {
        if (VolumeSource is null || volume.FindReplica(_options.NodeId) is not { } replica || !SnapshotsMissingOn(volume, replica).Any())
        {
            return;
        }

        if (_store.FindVolume(volume.Id) is null || _snapshotCopies.ContainsKey(volume.Id))
        {
            return;
        }

        var copy = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_snapshotCopies.TryAdd(volume.Id, copy.Task))
        {
            return;
        }

        _ = Task.Run(async () =>
        {
            try
            {
                await CopySnapshotsAsync(volume.Id, _stopping.Token).ConfigureAwait(false);
            }
            finally
            {
                _snapshotCopies.TryRemove(volume.Id, out _);
                copy.SetResult();
            }
        });
    }

    /// <summary>Copies the volume's missing snapshots one by one until none is left or none can be copied now.</summary>
    private async Task CopySnapshotsAsync(string volumeId, CancellationToken cancellationToken)
    {
        var skipped = new HashSet<string>(StringComparer.Ordinal);
        while (!cancellationToken.IsCancellationRequested)
        {
            var state = State.Current;
            if (state.FindVolume(volumeId) is not { } volume || volume.FindReplica(_options.NodeId) is not { } replica || _store.FindVolume(volumeId) is not { } local)
            {
                return;
            }

            var snapshot = SnapshotsMissingOn(volume, replica).FirstOrDefault(s => !skipped.Contains(s.Id));
            if (snapshot is null)
            {
                return;
            }

            try
            {
                if (!await CopySnapshotAsync(state, volume, replica, local, snapshot, cancellationToken).ConfigureAwait(false))
                {
                    skipped.Add(snapshot.Id);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is SlabException or Block.BlockTargetException or IOException or ClusterStateException)
            {
                SnapshotCopyLog.Failed(_logger, volume.Name, snapshot.Name, e.Message);
                skipped.Add(snapshot.Id); // the next pass of the reconciler tries again
            }
        }
    }

    /// <summary>Copies one snapshot from a holder that is online and records this replica as a holder; false when no holder is online or the record failed.</summary>
    private async Task<bool> CopySnapshotAsync(ClusterState state, VolumeInfo volume, ReplicaInfo replica, VolumeRecord local, SnapshotInfo snapshot, CancellationToken cancellationToken)
    {
        var record = new SnapshotRecord { Id = snapshot.Id, Name = snapshot.Name, SizeBytes = snapshot.SizeBytes, Created = snapshot.Created };
        if (local.FindSnapshotById(snapshot.Id) is null)
        {
            var holder = snapshot.HoldingReplicas(volume)
                .Where(r => r.NodeId != _options.NodeId && IsAlive(r.NodeId))
                .Select(r => state.Nodes.GetValueOrDefault(r.NodeId))
                .FirstOrDefault(n => n is not null);
            if (holder is null)
            {
                if (_noHolderWarned.TryAdd(snapshot.Id, 0))
                {
                    SnapshotCopyLog.NoHolder(_logger, volume.Name, snapshot.Name);
                }

                return false;
            }

            _noHolderWarned.TryRemove(snapshot.Id, out _);

            // The newest copy here older than this snapshot: what both share is not copied again.
            var basis = local.Snapshots.Where(s => s.Created <= snapshot.Created && s.Id != snapshot.Id).MaxBy(s => s.Created);
            var started = _time.GetTimestamp();

            // What the holder's copy no longer shares with its copy of the basis: only that is read (else everything is compared).
            var ranges = basis is null ? null : await VolumeSource!.SnapshotChangesAsync(holder, volume.Id, snapshot, basis.Id, cancellationToken).ConfigureAwait(false);
            SnapshotCopyResult moved = default;
            await using (var source = VolumeSource!.OpenSnapshotCopy(holder, snapshot))
            {
                await _store.AddSnapshotCopyAsync(
                    local,
                    record,
                    basis,
                    async (copy, basisFile, ct) => moved = await SnapshotCopier.CopyAsync(source, copy, basisFile is not null, ranges, ResyncThrottle, ct).ConfigureAwait(false),
                    cancellationToken).ConfigureAwait(false);
            }

            var seconds = _time.GetElapsedTime(started).TotalSeconds;
            var compared = ranges is null ? (basis is null ? "everything (a first copy)" : "everything (the holder could not tell what changed)") : $"{ranges.Sum(r => r.Length)} bytes the holder found changed";
            SnapshotCopyLog.Copied(_logger, volume.Name, snapshot.Name, holder.Name, basis?.Name ?? "nothing", compared, moved.BytesRead, moved.BytesWritten, seconds);
        }

        // Not recorded (no quorum, or the snapshot or this replica went meanwhile): the next pass looks again.
        return await ProposeLoggedAsync(
            new AddSnapshotHolder { Volume = volume.Id, SnapshotId = snapshot.Id, NodeId = _options.NodeId, Incarnation = replica.Incarnation },
            volume.Name,
            $"its replica here holds a copy of snapshot '{snapshot.Name}'",
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Waits for the snapshot copies under way to end (after <see cref="_stopping"/> was cancelled).</summary>
    private async Task StopSnapshotCopiesAsync()
    {
        foreach (var copy in _snapshotCopies.Values)
        {
            await copy.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private static partial class SnapshotCopyLog
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: copied snapshot {Snapshot} from {Holder} onto a reflink of {Basis}, looking at {Compared}: {BytesRead} bytes read, {BytesWritten} bytes written in {Seconds:0.0} s")]
        public static partial void Copied(ILogger logger, string volume, string snapshot, string holder, string basis, string compared, long bytesRead, long bytesWritten, double seconds);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: the replica here lacks snapshot {Snapshot}, and no replica that holds it is online; it is copied when one is")]
        public static partial void NoHolder(ILogger logger, string volume, string snapshot);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume}: copying snapshot {Snapshot} to the replica here failed: {Reason}; it is tried again")]
        public static partial void Failed(ILogger logger, string volume, string snapshot, string reason);
    }
}
