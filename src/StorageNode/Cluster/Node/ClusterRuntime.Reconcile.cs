using System.Threading.Channels;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Store;

namespace Slab.Cluster.Node;

public sealed partial class ClusterRuntime
{
    private static readonly TimeSpan ReconcileInterval = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The pause after a pass that left a replica of a volume attached here out of sync on an online
    /// node: its node may be up before its replication port (a restart), and its resync, which failed
    /// to connect, is started again after this rather than after <see cref="ReconcileInterval"/>.
    /// </summary>
    private static readonly TimeSpan ResyncRetryInterval = TimeSpan.FromSeconds(1);

    /// <summary>Set by a pass that found a resync to start or retry here (reconciler only).</summary>
    private bool _resyncPending;

    private readonly Channel<bool> _reconcileSignal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly SemaphoreSlim _reconcileLock = new(1, 1);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _attaching = new(StringComparer.Ordinal);

    /// <summary>Volumes whose local attachment was taken over by another node, warned about once per epoch (reconciler only).</summary>
    private readonly Dictionary<string, long> _fencedWarned = new(StringComparer.Ordinal);

    /// <summary>
    /// Marks an attach or mount of <paramref name="volumeId"/> as under way on this node until the
    /// result is disposed, so the reconciler does not clear its fresh attachment record meanwhile.
    /// </summary>
    public IDisposable BeginAttach(string volumeId)
    {
        _attaching.AddOrUpdate(volumeId, 1, static (_, n) => n + 1);
        return new AttachMark(this, volumeId);
    }

    private sealed class AttachMark(ClusterRuntime owner, string volumeId) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner._attaching.AddOrUpdate(volumeId, 0, static (_, n) => n - 1);
                owner._attaching.TryRemove(new KeyValuePair<string, int>(volumeId, 0));
            }
        }
    }

    private void OnStateChanged(object? sender, ClusterState state) => SignalReconcile();

    private void OnMemberChanged(object? sender, Membership.MemberView member) => SignalReconcile();

    private void SignalReconcile() => _reconcileSignal.Writer.TryWrite(true);

    /// <summary>
    /// Makes this node's replica of <paramref name="volumeId"/> match the cluster state once the read
    /// copy includes <paramref name="minRevision"/> (waiting up to 5 s for it), and returns the replica.
    /// </summary>
    /// <exception cref="SlabException">NotFound when the volume has no replica here; Unavailable when the state did not arrive.</exception>
    public async Task<VolumeRecord> SyncReplicaAsync(string volumeId, long minRevision, CancellationToken cancellationToken)
    {
        await WaitForRevisionAsync(minRevision, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
        var volume = State.Current.FindVolume(volumeId);
        if (volume?.FindReplica(_options.NodeId) is null)
        {
            throw new SlabException(SlabErrorCode.NotFound, $"node {_options.NodeName} holds no replica of volume '{volumeId}'");
        }

        await _reconcileLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await EnsureReplicaAsync(volume, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _reconcileLock.Release();
        }
    }

    /// <summary>Waits until the read copy reaches <paramref name="revision"/>.</summary>
    /// <exception cref="SlabException">Unavailable after <paramref name="timeout"/>.</exception>
    public async Task WaitForRevisionAsync(long revision, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (State.Current.Revision >= revision)
        {
            return;
        }

        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        EventHandler<ClusterState> handler = (_, state) =>
        {
            if (state.Revision >= revision)
            {
                reached.TrySetResult();
            }
        };
        State.CurrentChanged += handler;
        try
        {
            if (State.Current.Revision < revision)
            {
                await reached.Task.WaitAsync(timeout, _time, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (TimeoutException)
        {
            throw new SlabException(
                SlabErrorCode.Unavailable,
                $"node {_options.NodeName} has cluster state revision {State.Current.Revision} and did not receive revision {revision} within {timeout.TotalSeconds:0} s; is it cut off from the KVDB?");
        }
        finally
        {
            State.CurrentChanged -= handler;
        }
    }

    private async Task ReconcileLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                using (var wait = CancellationTokenSource.CreateLinkedTokenSource(stop))
                {
                    wait.CancelAfter(_resyncPending ? ResyncRetryInterval : ReconcileInterval);
                    try
                    {
                        await _reconcileSignal.Reader.ReadAsync(wait.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                    {
                        // periodic pass
                    }
                }

                await _reconcileLock.WaitAsync(stop).ConfigureAwait(false);
                try
                {
                    await ReconcileOnceAsync(State.Current, stop).ConfigureAwait(false);
                }
                finally
                {
                    _reconcileLock.Release();
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is SlabException or IOException or ClusterStateException)
            {
                Log.ReconcileFailed(_logger, "*", e.Message);
            }
        }
    }

    /// <summary>
    /// One pass: create or grow every replica the state places here; remove replicas of this cluster
    /// that the state no longer has; drop attachments the state records for this node that this node
    /// does not have and is not making (a crash or restart ended them, or a detach could not be recorded).
    /// </summary>
    private async Task ReconcileOnceAsync(ClusterState state, CancellationToken cancellationToken)
    {
        // A read copy that does not know this node yet is not the cluster's (e.g. empty at start).
        if (!state.Nodes.ContainsKey(_options.NodeId))
        {
            _resyncPending = _volumes.HasSurvivors;
            return;
        }

        // Only a copy that has caught up can say a volume is gone or attached elsewhere now.
        if (_volumes.HasSurvivors && CaughtUp(state))
        {
            await _volumes.AdoptSurvivorsAsync(volume => AdoptionRefusal(state, volume), cancellationToken).ConfigureAwait(false);
        }

        foreach (var volume in state.Volumes.Values)
        {
            if (volume.FindReplica(_options.NodeId) is null)
            {
                continue;
            }

            try
            {
                await EnsureReplicaAsync(volume, cancellationToken).ConfigureAwait(false);
                CopyMissingSnapshots(volume);
            }
            catch (SlabException e)
            {
                Log.ReconcileFailed(_logger, volume.Name, e.Message);
            }
        }

        Replicas.CloseIdleSnapshots();
        await ReleaseResyncLeasesOfDeletedVolumesAsync(state).ConfigureAwait(false);
        foreach (var local in _store.ListVolumes())
        {
            if (local.ClusterId != _options.ClusterId)
            {
                continue;
            }

            if (state.Volumes.TryGetValue(local.Id, out var volume) && volume.FindReplica(_options.NodeId) is not null)
            {
                continue;
            }

            try
            {
                Replicas.Release(local.Id);
                await _volumes.DeleteAsync(local.Id, cancellationToken).ConfigureAwait(false);
                Log.Reconciled(_logger, local.Name, "removed");
            }
            catch (SlabException e)
            {
                Log.ReconcileFailed(_logger, local.Name, e.Message);
            }
        }

        var resyncPending = false;
        foreach (var volume in state.Volumes.Values)
        {
            await ReconcileResyncAttachmentAsync(state, volume, cancellationToken).ConfigureAwait(false);
            await FollowReplicaSetAsync(volume, cancellationToken).ConfigureAwait(false);
            resyncPending |= ResyncReturnedReplicas(state, volume);
            WarnIfTakenOver(state, volume);
            await ClearStaleAttachmentRecordAsync(volume, "detached in the cluster state (this node no longer has it attached)", cancellationToken).ConfigureAwait(false);
            await EndInterruptedOperationAsync(volume, cancellationToken).ConfigureAwait(false);
        }

        // Attachments an earlier slabd left that could not be adopted yet are tried again soon too.
        _resyncPending = resyncPending || _volumes.HasSurvivors;
        await RepairReplicasAsync(state, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Why an attachment an earlier slabd on this node left must not be adopted: its writes would
    /// reach a volume that is not attached here any more. Null when the state still records it
    /// attached to this node.
    /// </summary>
    private string? AdoptionRefusal(ClusterState state, VolumeRecord volume)
    {
        if (!state.Volumes.TryGetValue(volume.Id, out var info))
        {
            return "the cluster no longer has this volume";
        }

        return info.Attachment switch
        {
            { Purpose: AttachPurpose.Host } holder when holder.NodeId == _options.NodeId => null,
            { NodeId: var other } when other != _options.NodeId =>
                $"node {(state.Nodes.TryGetValue(other, out var node) ? node.Name : other)} has it attached now (epoch {info.Epoch})",
            _ => "the cluster state records it detached from this node",
        };
    }

    /// <summary>Where the volume's controller is open here: opens replicas ha-update added and lets go of those it removed.</summary>
    private async Task FollowReplicaSetAsync(VolumeInfo volume, CancellationToken cancellationToken)
    {
        if (_volumes.ControllerOf(volume.Id) is null)
        {
            return;
        }

        try
        {
            if (await _volumes.FollowReplicaSetAsync(volume.Id, [.. volume.Replicas.Select(r => r.NodeId)], cancellationToken).ConfigureAwait(false))
            {
                Log.VolumeReconciled(_logger, volume.Name, "its controller here follows the replica set");
            }
        }
        catch (SlabException e)
        {
            Log.ReconcileFailed(_logger, volume.Name, e.Message);
        }
    }

    /// <summary>
    /// Where the volume is attached here (its controller owns resyncs): starts a resync of a replica
    /// that is out of the in-sync set while its node is online (by delta when the controller knows
    /// what it missed, else a rebuild). Returns true when such a replica was found and no copy of
    /// it is under way (one may have just been started, and fail to connect): the next pass comes soon.
    /// </summary>
    private bool ResyncReturnedReplicas(ClusterState state, VolumeInfo volume)
    {
        // A controller open here without the attachment (a check, a fenced one) must not copy: the attached one writes meanwhile.
        if (volume.Attachment?.NodeId != _options.NodeId || _volumes.ControllerOf(volume.Id) is not { } controller)
        {
            return false;
        }

        foreach (var replica in volume.Replicas)
        {
            if (replica.State != ReplicaState.InSync && IsAlive(replica.NodeId) && state.Nodes.TryGetValue(replica.NodeId, out var node))
            {
                if (controller.TryStartResync(replica.NodeId))
                {
                    var action = "resync of the replica on " + node.Name + " started";
                    Log.VolumeReconciled(_logger, volume.Name, action);
                    return true;
                }

                return controller.Resync is null;
            }
        }

        return false;
    }

    /// <summary>Logs once per epoch that a volume attached here was taken over by another node (its device here is fenced).</summary>
    private void WarnIfTakenOver(ClusterState state, VolumeInfo volume)
    {
        if (volume.Attachment is not { } holder || holder.NodeId == _options.NodeId || _volumes.GetAttachment(volume.Id) is not { } stale)
        {
            _fencedWarned.Remove(volume.Id);
            return;
        }

        if (!_fencedWarned.TryGetValue(volume.Id, out var warnedAt) || warnedAt != volume.Epoch)
        {
            _fencedWarned[volume.Id] = volume.Epoch;
            Log.AttachmentTakenOver(_logger, volume.Name, stale.DevicePath, state.Nodes.TryGetValue(holder.NodeId, out var node) ? node.Name : holder.NodeId, volume.Epoch);
        }
    }

    /// <summary>
    /// Records in the cluster state that <paramref name="volume"/> is detached when the state says it is
    /// attached here but this node neither has it attached nor is attaching it; <paramref name="action"/>
    /// is what the log says was done. Failures are logged; cancellation is thrown.
    /// </summary>
    private async Task ClearStaleAttachmentRecordAsync(VolumeInfo volume, string action, CancellationToken cancellationToken)
    {
        // Checked in this order: an attach marks itself before it records and unmarks after it attached.
        // Internal resync attachments are the resync reconciler's.
        if (volume.Attachment is not { Purpose: AttachPurpose.Host } attachment || attachment.NodeId != _options.NodeId
            || _attaching.ContainsKey(volume.Id) || _volumes.GetAttachment(volume.Id) is not null || _volumes.IsSurvivor(volume.Name))
        {
            return;
        }

        try
        {
            var result = await State.ProposeAsync(new DetachVolume { Volume = volume.Id, NodeId = _options.NodeId }, cancellationToken).ConfigureAwait(false);
            if (result.IsSuccess)
            {
                Log.Reconciled(_logger, volume.Name, action);
            }
            else
            {
                Log.ReconcileFailed(_logger, volume.Name, result.Message);
            }
        }
        catch (ClusterStateException e)
        {
            Log.ReconcileFailed(_logger, volume.Name, e.Message);
        }
    }

    /// <summary>
    /// A snapshot or restore attachment of this node that nothing here carries on (slabd restarted
    /// during it): a snapshot's is released (its pending snapshot is deleted by the leader); a
    /// restore is finished with its source as the one truth, so the other replicas are rebuilt.
    /// </summary>
    private async Task EndInterruptedOperationAsync(VolumeInfo volume, CancellationToken cancellationToken)
    {
        if (volume.Attachment is not { Purpose: AttachPurpose.Snapshot or AttachPurpose.Restore } attachment || attachment.NodeId != _options.NodeId
            || _attaching.ContainsKey(volume.Id))
        {
            return;
        }

        if (attachment.Purpose == AttachPurpose.Snapshot)
        {
            await ProposeLoggedAsync(new DetachVolume { Volume = volume.Id, NodeId = _options.NodeId, Purpose = AttachPurpose.Snapshot }, volume.Name, "released the attachment of an interrupted snapshot", cancellationToken).ConfigureAwait(false);
            return;
        }

        await ProposeLoggedAsync(
            new FinishRestore { Volume = volume.Id, NodeId = _options.NodeId, Restored = [attachment.RestoreSource] },
            volume.Name,
            "ended an interrupted restore: the restore source's replica is kept, the others are rebuilt from it",
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// At shutdown, after this node undid its attachments: records in the cluster state that the
    /// volumes attached here are detached, so another node can attach them at once (rather than after
    /// this node is seen offline, by a takeover that bumps the epoch). Best effort within
    /// <paramref name="timeout"/>: without quorum the records stay and the reconciler clears them when
    /// this node starts again. Volumes still attached here (a detach failed) keep their record.
    /// </summary>
    public async Task RecordShutdownDetachesAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await ReleaseResyncAttachmentsAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return;
        }

        foreach (var volume in State.Current.Volumes.Values)
        {
            try
            {
                await ClearStaleAttachmentRecordAsync(volume, "detached in the cluster state (this node stops)", deadline.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                Log.ReconcileFailed(_logger, volume.Name, $"recording the detach took longer than {timeout}; the record stays until this node starts again");
                return;
            }
        }
    }

    /// <summary>Creates or grows this node's replica of <paramref name="volume"/>; the caller holds the reconcile lock.</summary>
    private async Task<VolumeRecord> EnsureReplicaAsync(VolumeInfo volume, CancellationToken cancellationToken)
    {
        var local = _store.FindVolume(volume.Id);
        if (local is null)
        {
            if (_store.FindVolume(volume.Name) is { } clash)
            {
                Log.ForeignVolume(_logger, clash.Name, _options.ClusterId);
                throw new SlabException(
                    SlabErrorCode.AlreadyExists,
                    $"node {_options.NodeName} already has a volume named '{volume.Name}' that is not the cluster's (id {clash.Id}); rename or delete it there");
            }

            var origin = CloneOriginHere(volume);
            local = await _store.CreateVolumeAsync(LocalRecordOf(volume, _options.ClusterId), origin, cancellationToken).ConfigureAwait(false);
            var action = origin is null ? "created" : "created as a reflink of " + volume.Origin!.Reference;
            Log.Reconciled(_logger, volume.Name, action);
        }
        else if (local.SizeBytes < volume.Spec.SizeBytes)
        {
            var grown = await _volumes.UpdateAsync(volume.Id, volume.Spec.SizeBytes, new Dictionary<string, string>(), limits: null, cancellationToken).ConfigureAwait(false);
            local = grown.Record;
            Log.Reconciled(_logger, volume.Name, "grown");
        }

        // Fence older controllers now rather than at the new controller's first request.
        if (await _volumes.FenceReplicaAsync(volume.Id, volume.Epoch, cancellationToken).ConfigureAwait(false))
        {
            local = _store.FindVolume(volume.Id) ?? local;
        }

        // Copies of snapshots the cluster deleted (or never committed) go. The copies are listed before
        // the state is read: a copy is made only once this node's state has its snapshot (pending), so
        // one made after the listing is not dropped and one listed is judged by a state that knows it.
        var copies = (_store.FindVolume(volume.Id) ?? local).Snapshots;
        if (copies.Count == 0)
        {
            return local; // most replicas: nothing to look up every pass
        }

        var known = State.Current.FindVolume(volume.Id) ?? volume;
        var gone = copies.Where(c => known.FindSnapshotById(c.Id) is null).Select(c => c.Id).ToList();
        if (gone.Count > 0)
        {
            var dropped = await _volumes.DropSnapshotsAsync(volume.Id, gone, cancellationToken).ConfigureAwait(false);
            var action = dropped == 1 ? "dropped 1 snapshot copy the cluster no longer has" : $"dropped {dropped} snapshot copies the cluster no longer has";
            Log.Reconciled(_logger, volume.Name, action);
            local = _store.FindVolume(volume.Id) ?? local;
        }

        return local;
    }

    /// <summary>
    /// Where this node makes an in-sync replica of a clone: its copy of the origin snapshot, which the
    /// new replica reflinks. Null for any other replica (made empty; a rebuilding one is then copied).
    /// </summary>
    /// <exception cref="SlabException">This node was placed to hold the clone in sync but holds no copy of the snapshot.</exception>
    private ReplicaSource? CloneOriginHere(VolumeInfo volume)
    {
        if (volume.Origin is not { } origin || volume.FindReplica(_options.NodeId) is not { State: ReplicaState.InSync })
        {
            return null;
        }

        if (_store.FindVolume(origin.VolumeId) is { } source && source.FindSnapshotById(origin.SnapshotId) is { } snapshot)
        {
            return new ReplicaSource(source, snapshot);
        }

        throw new SlabException(
            SlabErrorCode.FailedPrecondition,
            $"node {_options.NodeName} holds no copy of snapshot {origin.Reference} that volume '{volume.Name}' is cloned from (deleted meanwhile?); clone it again");
    }

    /// <summary>The node-local record of a cluster volume's replica, as the cluster state describes it (size from the spec, not yet formatted).</summary>
    internal static VolumeRecord LocalRecordOf(VolumeInfo volume, string clusterId) => new()
    {
        Id = volume.Id,
        Name = volume.Name,
        SizeBytes = volume.Spec.SizeBytes,
        Repl = volume.Spec.Repl,
        Fs = volume.Spec.Fs,
        IoPriority = volume.Spec.IoPriority,
        Labels = volume.Spec.Labels,
        Created = volume.Created,
        Epoch = volume.Epoch,
        DriveId = "",
        ClusterId = clusterId,
        Source = volume.Origin?.Reference,
    };
}
