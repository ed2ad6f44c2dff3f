using Slab.Cluster.State;
using Slab.Common;
using Slab.Store;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

// Snapshots and clones of cluster volumes. A snapshot is crash-consistent across replicas: where the
// volume is attached (or resynced), its controller holds writes at a boundary and flushes, every
// in-sync replica reflinks under its epoch gate at the controller's epoch, writes resume, and the
// snapshot is committed with that epoch expected. A detached volume is held by an internal snapshot
// attachment instead (a host attach takes it over, which makes the commit fail). A snapshot is
// pending until committed; a failed one is deleted, and the replicas' nodes drop their copies.
public sealed partial class ClusterVolumeOperations
{
    /// <summary>Takes a crash-consistent snapshot of a cluster volume and returns it, committed.</summary>
    /// <exception cref="SlabException">Bad name; unknown volume; the name is taken; the volume's controller node is offline or the volume changed hands meanwhile.</exception>
    public async Task<(VolumeInfo Volume, SnapshotInfo Snapshot)> CreateSnapshotAsync(string volumeReference, string name, CancellationToken cancellationToken)
    {
        VolumeNames.Validate(name, "snapshot");
        var volume = Require(volumeReference);
        if (volume.FindSnapshot(name) is { } existing && existing.Name == name)
        {
            throw new SlabException(SlabErrorCode.AlreadyExists, $"volume '{volume.Name}' already has snapshot '{name}'; choose another name");
        }

        string snapshotId;
        long revision;
        switch (WriteHolderOf(volume, "snapshot"))
        {
            case null:
                (snapshotId, revision) = await TakeDetachedSnapshotAsync(volume, name, cancellationToken).ConfigureAwait(false);
                break;
            case var here when here == runtime.LocalNodeId:
                (snapshotId, revision) = await TakeSnapshotHereAsync(volume.Id, name, cancellationToken).ConfigureAwait(false);
                break;
            case var elsewhere:
                var request = new V1.TakeSnapshotRequest { VolumeId = volume.Id, Name = name };
                var taken = await peers.CallAsync(NodeOf(elsewhere), (client, options) => client.TakeSnapshotAsync(request, options), cancellationToken).ConfigureAwait(false);
                (snapshotId, revision) = (taken.SnapshotId, (long)taken.Revision);
                break;
        }

        await runtime.WaitForRevisionAsync(revision, StateWait, cancellationToken).ConfigureAwait(false);
        volume = Require(volume.Id);
        var snapshot = volume.FindSnapshotById(snapshotId)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"snapshot '{name}' of volume '{volume.Name}' was deleted right after it was taken");
        return (volume, snapshot);
    }

    /// <summary>
    /// The node whose controller must hold the volume's writes for a <paramref name="what"/> ("snapshot", "group snapshot"; where it is
    /// attached or resynced), or null when it is detached (a snapshot attachment holds it then).
    /// </summary>
    /// <exception cref="SlabException">That node is offline (Unavailable); the volume is held by a snapshot or restore (FailedPrecondition).</exception>
    private string? WriteHolderOf(VolumeInfo volume, string what)
    {
        switch (volume.Attachment)
        {
            case { Purpose: AttachPurpose.Host or AttachPurpose.Resync } attachment:
                if (attachment.NodeId != runtime.LocalNodeId && !runtime.IsAlive(attachment.NodeId))
                {
                    throw new SlabException(
                        SlabErrorCode.Unavailable,
                        $"volume '{volume.Name}' is attached on {NameOf(attachment.NodeId)}, which is offline: its writes cannot be held for a {what}; attach it on another node (takeover) first");
                }

                return attachment.NodeId;
            case { } busy:
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is {Describe(busy)} by {NameOf(busy.NodeId)}; take the {what} when that ends");
            default:
                return null;
        }
    }

    /// <summary>
    /// Takes a snapshot through the volume's controller on this node (the node where it is attached
    /// or resynced); returns its id and a revision that includes the commit.
    /// </summary>
    public async Task<(string SnapshotId, long Revision)> TakeSnapshotHereAsync(string volumeId, string name, CancellationToken cancellationToken)
    {
        var volume = Require(volumeId);
        if (volume.Attachment is not { Purpose: AttachPurpose.Host or AttachPurpose.Resync } attachment || attachment.NodeId != runtime.LocalNodeId)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is no longer attached on {runtime.Options.NodeName}; take the snapshot again");
        }

        // Writes are held only while the replicas reflink: the copies are fixed then, and the commit
        // (which expects the boundary's epoch, so a replica dropped meanwhile makes it fail) need not hold them.
        return await TakeAsync(
            volume,
            name,
            async (snapshotId, pendingRevision, token) =>
            {
                var held = System.Diagnostics.Stopwatch.StartNew();
                var boundary = await volumes.AtWriteBoundaryAsync(
                    volume.Id,
                    async (boundary, cut) =>
                    {
                        await ReflinkReplicasAsync(volume, snapshotId, pendingRevision, boundary.Epoch, boundary.InSyncNodeIds, cut).ConfigureAwait(false);
                        return boundary;
                    },
                    token).ConfigureAwait(false);
                return (boundary, held.Elapsed.TotalMilliseconds);
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Records a pending snapshot, has <paramref name="cut"/> reflink the replicas (it returns the
    /// cut's epoch and in-sync replicas, and how long writes were held), then commits it with that
    /// epoch expected. Any failure deletes the snapshot. Returns its id and a revision with the commit.
    /// </summary>
    private async Task<(string SnapshotId, long Revision)> TakeAsync(
        VolumeInfo volume, string name, Func<string, long, CancellationToken, Task<(Volumes.WriteBoundary Boundary, double HeldMs)>> cut, CancellationToken cancellationToken)
    {
        var snapshotId = NewId();
        var pending = await runtime.ProposeOrThrowAsync(new CreateSnapshot { Volume = volume.Id, SnapshotId = snapshotId, Name = name }, prepared: false, cancellationToken).ConfigureAwait(false);
        try
        {
            var (boundary, heldMs) = await cut(snapshotId, pending.Revision, cancellationToken).ConfigureAwait(false);
            var committed = await runtime.ProposeOrThrowAsync(
                new CommitSnapshot { Volume = volume.Id, SnapshotId = snapshotId, ExpectedEpoch = boundary.Epoch, Holders = [.. boundary.InSyncNodeIds] },
                prepared: false,
                cancellationToken).ConfigureAwait(false);
            Log.SnapshotTaken(logger, volume.Name, name, boundary.InSyncNodeIds.Count, boundary.Epoch, heldMs);
            return (snapshotId, committed.Revision);
        }
        catch (Exception e) when (e is SlabException or OperationCanceledException)
        {
            await AbandonSnapshotAsync(volume, snapshotId, name, e.Message).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>A detached volume: held by an internal snapshot attachment on this node while its in-sync replicas on online nodes reflink.</summary>
    private async Task<(string SnapshotId, long Revision)> TakeDetachedSnapshotAsync(VolumeInfo volume, string name, CancellationToken cancellationToken)
    {
        using var marked = runtime.BeginAttach(volume.Id);
        var attached = await runtime.ProposeOrThrowAsync(
            new AttachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId, Purpose = AttachPurpose.Snapshot }, prepared: true, cancellationToken).ConfigureAwait(false);
        try
        {
            await runtime.WaitForRevisionAsync(attached.Revision, StateWait, cancellationToken).ConfigureAwait(false);
            volume = Require(volume.Id);
            var boundary = DetachedBoundary(volume);
            return await TakeAsync(
                volume,
                name,
                async (snapshotId, pendingRevision, token) =>
                {
                    await ReflinkReplicasAsync(volume, snapshotId, pendingRevision, boundary.Epoch, boundary.InSyncNodeIds, token).ConfigureAwait(false);
                    return (boundary, 0d);
                },
                cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await ReleaseAsync(new DetachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId, Purpose = AttachPurpose.Snapshot }, volume.Name, "the end of a snapshot").ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The boundary of a detached volume held by a snapshot attachment: its epoch and its in-sync
    /// replicas on online nodes. No writes to hold: a host attach would take the attachment over with
    /// an epoch bump, which makes the commit (expecting this epoch) fail.
    /// </summary>
    /// <exception cref="SlabException">No in-sync replica is on an online node (Unavailable).</exception>
    private Volumes.WriteBoundary DetachedBoundary(VolumeInfo volume)
    {
        var holders = volume.Replicas.Where(r => r.State == ReplicaState.InSync && runtime.IsAlive(r.NodeId)).Select(r => r.NodeId).ToList();
        return holders.Count > 0
            ? new Volumes.WriteBoundary(volume.Epoch, holders)
            : throw new SlabException(SlabErrorCode.Unavailable, $"no in-sync replica of volume '{volume.Name}' is on an online node; nothing can be snapshotted");
    }

    /// <summary>
    /// Reflinks the replicas on <paramref name="nodeIds"/> into the snapshot, in parallel, each
    /// admitted at <paramref name="epoch"/> once its node's state includes <paramref name="pendingRevision"/>.
    /// </summary>
    private async Task ReflinkReplicasAsync(VolumeInfo volume, string snapshotId, long pendingRevision, long epoch, IReadOnlyList<string> nodeIds, CancellationToken cancellationToken)
    {
        await Task.WhenAll(nodeIds.Select(nodeId => ReflinkReplicaAsync(volume, nodeId, snapshotId, pendingRevision, epoch, cancellationToken))).ConfigureAwait(false);
    }

    private async Task ReflinkReplicaAsync(VolumeInfo volume, string nodeId, string snapshotId, long pendingRevision, long epoch, CancellationToken cancellationToken)
    {
        if (nodeId == runtime.LocalNodeId)
        {
            await SnapshotLocalReplicaAsync(volume.Id, snapshotId, pendingRevision, epoch, cancellationToken).ConfigureAwait(false);
            return;
        }

        var node = NodeOf(nodeId);
        var request = new V1.SnapshotReplicaRequest { VolumeId = volume.Id, SnapshotId = snapshotId, Epoch = (ulong)epoch, MinRevision = (ulong)pendingRevision };
        try
        {
            await peers.CallAsync(node, (client, options) => client.SnapshotReplicaAsync(request, options), cancellationToken).ConfigureAwait(false);
        }
        catch (SlabException e)
        {
            throw new SlabException(e.Code, $"the replica on {node.Name} could not be snapshotted: {e.Message}", e);
        }
    }

    /// <summary>
    /// Replica side (this node): reflinks this node's replica into the snapshot once this node's state
    /// includes <paramref name="pendingRevision"/> (its reconciler drops copies of snapshots its state
    /// does not know, and reads the state after it lists the copies). The copy is named by the
    /// snapshot's id (names are the cluster state's; a name deleted and reused never clashes here).
    /// </summary>
    public async Task SnapshotLocalReplicaAsync(string volumeId, string snapshotId, long pendingRevision, long epoch, CancellationToken cancellationToken)
    {
        await runtime.WaitForRevisionAsync(pendingRevision, StateWait, cancellationToken).ConfigureAwait(false);
        await volumes.SnapshotLocalReplicaAsync(
            volumeId, new SnapshotRecord { Id = snapshotId, Name = snapshotId, SizeBytes = 0, Created = DateTimeOffset.UtcNow }, epoch, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes a snapshot that could not be taken (best effort: the leader deletes pending snapshots left behind).</summary>
    private async Task AbandonSnapshotAsync(VolumeInfo volume, string snapshotId, string name, string reason)
    {
        Log.SnapshotAbandoned(logger, volume.Name, name, reason);
        await ReleaseAsync(new DeleteSnapshot { Volume = volume.Id, Snapshot = snapshotId }, volume.Name, $"deleting the failed snapshot '{name}'").ConfigureAwait(false);
    }

    /// <summary>
    /// Proposes a clean-up command (not cancelled with the request); when it cannot be committed, logs
    /// that the reconciler (or the leader) finishes it and returns null.
    /// </summary>
    private async Task<State.CommandResult?> ReleaseAsync(ClusterCommand command, string volumeName, string action)
    {
        try
        {
            using var deadline = new CancellationTokenSource(PeerApi.CallTimeout);
            return await runtime.ProposeOrThrowAsync(command, prepared: false, deadline.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SlabException or OperationCanceledException)
        {
            Log.CleanupDeferred(logger, volumeName, action, e.Message);
            return null;
        }
    }

    /// <summary>The committed snapshots of a volume, oldest first.</summary>
    public (VolumeInfo Volume, IReadOnlyList<SnapshotInfo> Snapshots) ListSnapshots(string volumeReference)
    {
        var volume = Require(volumeReference);
        return (volume, [.. volume.Snapshots.Where(s => !s.Pending)]);
    }

    /// <summary>Deletes a snapshot's record; the nodes holding it drop their copies when they see it gone.</summary>
    public async Task DeleteSnapshotAsync(string volumeReference, string snapshotReference, CancellationToken cancellationToken)
    {
        var volume = Require(volumeReference);
        var snapshot = RequireSnapshot(volume, snapshotReference);
        await runtime.ProposeOrThrowAsync(new DeleteSnapshot { Volume = volume.Id, Snapshot = snapshot.Id }, prepared: false, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Clones <c>VOL@SNAP</c>, or <c>VOL</c> through a snapshot taken for the clone (deleted once the
    /// clone's replicas exist): replicas on nodes holding the snapshot reflink it (instant, in sync),
    /// any others are rebuilt from them.
    /// </summary>
    public async Task<VolumeInfo> CloneAsync(string sourceReference, string name, IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken)
    {
        VolumeNames.Validate(name, "volume");
        var (volumeName, snapshotName) = VolumeNames.Split(sourceReference ?? "");
        var source = Require(volumeName);
        if (runtime.State.Current.FindVolume(name) is { } clash)
        {
            throw new SlabException(SlabErrorCode.AlreadyExists, $"volume '{name}' already exists (id {clash.Id}); choose another name");
        }

        var cloneLabels = labels.Count > 0 ? VolumeNames.ValidateLabels(labels) : source.Spec.Labels;

        SnapshotInfo snapshot;
        var temporary = snapshotName is null;
        if (snapshotName is not null)
        {
            snapshot = RequireSnapshot(source, snapshotName);
        }
        else
        {
            (source, snapshot) = await CreateSnapshotAsync(source.Id, CloneSnapshotName(name), cancellationToken).ConfigureAwait(false);
        }

        try
        {
            var id = NewId();
            return await CreateAsync(
                new CreateVolume
                {
                    RequestId = id,
                    VolumeId = id,
                    Name = name,
                    Spec = source.Spec with { SizeBytes = Math.Max(snapshot.SizeBytes, 4096), Labels = cloneLabels },
                    Origin = new VolumeOrigin { VolumeId = source.Id, SnapshotId = snapshot.Id, Reference = sourceReference! },
                },
                cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (temporary)
            {
                await ReleaseAsync(new DeleteSnapshot { Volume = source.Id, Snapshot = snapshot.Id }, source.Name, $"deleting the snapshot taken for clone '{name}'").ConfigureAwait(false);
            }
        }
    }

    /// <summary>The snapshot a clone of a live volume is made from: "clone-NAME", within the name length limit.</summary>
    private static string CloneSnapshotName(string cloneName)
    {
        var name = "clone-" + cloneName;
        return name.Length <= VolumeNames.MaximumLength ? name : name[..VolumeNames.MaximumLength];
    }

    private static SnapshotInfo RequireSnapshot(VolumeInfo volume, string snapshotReference)
    {
        if (string.IsNullOrEmpty(snapshotReference))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "snapshot name is empty");
        }

        var snapshot = volume.FindSnapshot(snapshotReference)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' has no snapshot '{snapshotReference}'; list them with 'slabctl snapshot list {volume.Name}'");
        return snapshot.Pending
            ? throw new SlabException(SlabErrorCode.FailedPrecondition, $"snapshot '{volume.Name}@{snapshot.Name}' is still being taken; try again in a moment")
            : snapshot;
    }

    private static string Describe(AttachmentInfo attachment) => attachment.Purpose switch
    {
        AttachPurpose.Snapshot => "being snapshotted",
        AttachPurpose.Restore => "being restored",
        AttachPurpose.Resync => "being resynced",
        _ => "attached",
    };
}
