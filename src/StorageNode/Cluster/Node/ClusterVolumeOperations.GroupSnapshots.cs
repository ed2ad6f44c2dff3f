using System.Collections.Concurrent;
using Grpc.Core;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

/// <summary>One volume of a group snapshot as a holding node sees it: its pending snapshot and the revision that records it.</summary>
public sealed record GroupSnapshotMember(string VolumeId, string SnapshotId, long PendingRevision);

// Group snapshots: several volumes cut at one write boundary. The coordinating node records a
// pending snapshot per volume, then has every volume's writes held at once: its own attached
// volumes in-process, volumes attached on other nodes through a HoldForGroupSnapshot stream per node,
// detached volumes by snapshot attachments on this node (they take no writes). Once all hold, every
// node reflinks its volumes' in-sync replicas and releases; then each snapshot is committed with its
// cut's epoch expected. Any failure deletes all of them: a group is kept whole or not at all.
public sealed partial class ClusterVolumeOperations
{
    /// <summary>How long a node holds writes for a group snapshot waiting for the cut before it gives up.</summary>
    public static readonly TimeSpan GroupHoldTimeout = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How long the coordinator waits for every node to hold (its own volumes' writes are held meanwhile):
    /// a node that does not answer by then (frozen, cut off) fails the group instead of stalling writes.
    /// </summary>
    public static readonly TimeSpan GroupHoldSetupTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Takes a crash-consistent snapshot named <paramref name="name"/> of every volume, at one write
    /// boundary; returns them committed, in the order of <paramref name="volumeReferences"/>.
    /// </summary>
    /// <exception cref="SlabException">Bad name or volume list; unknown volume; the name is taken on a volume; a volume's node is offline or busy; a cut or commit failed (nothing is kept then).</exception>
    public async Task<IReadOnlyList<(VolumeInfo Volume, SnapshotInfo Snapshot)>> CreateGroupSnapshotAsync(
        IReadOnlyList<string> volumeReferences, string name, CancellationToken cancellationToken)
    {
        VolumeNames.Validate(name, "snapshot");
        GroupSnapshotRules.CheckCount(volumeReferences.Count);
        var group = volumeReferences.Select(Require).ToList();
        GroupSnapshotRules.CheckMembers(group, name, v => v.Id, v => v.Name, (v, n) => v.FindSnapshot(n) is { } s && s.Name == n);

        var local = new List<VolumeInfo>();
        var remote = new Dictionary<string, List<VolumeInfo>>(StringComparer.Ordinal);
        var detached = new List<VolumeInfo>();
        foreach (var volume in group)
        {
            switch (WriteHolderOf(volume, "group snapshot"))
            {
                case null:
                    detached.Add(volume);
                    break;
                case var here when here == runtime.LocalNodeId:
                    local.Add(volume);
                    break;
                case var elsewhere:
                    (remote.TryGetValue(elsewhere, out var list) ? list : remote[elsewhere] = []).Add(volume);
                    break;
            }
        }

        var marks = new List<IDisposable>();
        var heldForSnapshot = new List<VolumeInfo>();
        try
        {
            long revision = 0;
            foreach (var volume in detached)
            {
                marks.Add(runtime.BeginAttach(volume.Id));
                var attached = await runtime.ProposeOrThrowAsync(
                    new AttachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId, Purpose = AttachPurpose.Snapshot }, prepared: true, cancellationToken).ConfigureAwait(false);
                heldForSnapshot.Add(volume);
                revision = Math.Max(revision, attached.Revision);
            }

            await runtime.WaitForRevisionAsync(revision, StateWait, cancellationToken).ConfigureAwait(false);
            var pending = new List<(VolumeInfo Volume, GroupSnapshotMember Member)>();
            try
            {
                foreach (var volume in group)
                {
                    var snapshotId = NewId();
                    var recorded = await runtime.ProposeOrThrowAsync(new CreateSnapshot { Volume = volume.Id, SnapshotId = snapshotId, Name = name }, prepared: false, cancellationToken)
                        .ConfigureAwait(false);
                    pending.Add((volume, new GroupSnapshotMember(volume.Id, snapshotId, recorded.Revision)));
                }

                var members = pending.ToDictionary(p => p.Volume.Id, p => p.Member, StringComparer.Ordinal);
                var held = System.Diagnostics.Stopwatch.StartNew();
                var boundaries = await CutGroupAsync(members, local, remote, [.. detached.Select(v => Require(v.Id))], cancellationToken).ConfigureAwait(false);
                var heldMs = held.Elapsed.TotalMilliseconds;
                foreach (var (volume, member) in pending)
                {
                    var boundary = boundaries[volume.Id];
                    var committed = await runtime.ProposeOrThrowAsync(
                        new CommitSnapshot { Volume = volume.Id, SnapshotId = member.SnapshotId, ExpectedEpoch = boundary.Epoch, Holders = [.. boundary.InSyncNodeIds] },
                        prepared: false,
                        cancellationToken).ConfigureAwait(false);
                    revision = Math.Max(revision, committed.Revision);
                }

                Log.GroupSnapshotTaken(logger, name, group.Count, remote.Count + 1, heldMs);
                await runtime.WaitForRevisionAsync(revision, StateWait, cancellationToken).ConfigureAwait(false);
                return [.. pending.Select(p =>
                {
                    var volume = Require(p.Volume.Id);
                    return (volume, volume.FindSnapshotById(p.Member.SnapshotId)
                        ?? throw new SlabException(SlabErrorCode.NotFound, $"snapshot '{name}' of volume '{volume.Name}' was deleted right after it was taken"));
                })];
            }
            catch (Exception e) when (e is SlabException or OperationCanceledException)
            {
                foreach (var (volume, member) in pending)
                {
                    await AbandonSnapshotAsync(volume, member.SnapshotId, name, e.Message).ConfigureAwait(false);
                }

                throw;
            }
        }
        finally
        {
            foreach (var volume in heldForSnapshot)
            {
                await ReleaseAsync(new DetachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId, Purpose = AttachPurpose.Snapshot }, volume.Name, "the end of a group snapshot")
                    .ConfigureAwait(false);
            }

            foreach (var mark in marks)
            {
                mark.Dispose();
            }
        }
    }

    /// <summary>Holds every volume's writes at once (here, on the other nodes), then cuts them all; returns each volume's boundary.</summary>
    private async Task<Dictionary<string, WriteBoundary>> CutGroupAsync(
        Dictionary<string, GroupSnapshotMember> members, List<VolumeInfo> local, Dictionary<string, List<VolumeInfo>> remote, List<VolumeInfo> detached, CancellationToken cancellationToken)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var boundaries = new ConcurrentDictionary<string, WriteBoundary>(StringComparer.Ordinal);
        var allHeld = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var calls = new List<(NodeInfo Node, AsyncDuplexStreamingCall<V1.GroupHoldRequest, V1.GroupHoldReply> Call)>();
        try
        {
            var localHeld = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var localCut = local.Count == 0
                ? Task.FromResult<IReadOnlyList<(string VolumeId, WriteBoundary Boundary)>>([])
                : HoldAndCutAsync(
                    [.. local.Select(v => members[v.Id])],
                    async token =>
                    {
                        localHeld.TrySetResult();
                        await allHeld.Task.WaitAsync(token).ConfigureAwait(false);
                    },
                    abort.Token);
            if (local.Count == 0)
            {
                localHeld.TrySetResult();
            }

            foreach (var (nodeId, volumes) in remote)
            {
                var node = NodeOf(nodeId);
                var call = peers.Internal(node).HoldForGroupSnapshot(new CallOptions(deadline: DateTime.UtcNow + GroupHoldTimeout + PeerApi.CallTimeout, cancellationToken: abort.Token));
                calls.Add((node, call));
                var start = new V1.GroupHoldStart { HoldTimeoutMs = (uint)GroupHoldTimeout.TotalMilliseconds };
                start.Members.Add(volumes.Select(v => members[v.Id]).Select(m => new V1.GroupHoldMember { VolumeId = m.VolumeId, SnapshotId = m.SnapshotId, PendingRevision = (ulong)m.PendingRevision }));
                await Translated(node, () => call.RequestStream.WriteAsync(new V1.GroupHoldRequest { Start = start }, abort.Token)).ConfigureAwait(false);
            }

            // Every node holds before any cuts.
            var remoteHeld = calls.Select(c => ExpectReplyAsync(c.Node, c.Call, V1.GroupHoldReply.StepOneofCase.Held, abort.Token)).ToList();
            if (await Task.WhenAny(localHeld.Task, localCut).ConfigureAwait(false) == localCut && !localHeld.Task.IsCompleted)
            {
                await localCut.ConfigureAwait(false); // failed before it held: throws why
            }

            try
            {
                await Task.WhenAll(remoteHeld).WaitAsync(GroupHoldSetupTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                var slow = calls.Where((_, i) => !remoteHeld[i].IsCompleted).Select(c => c.Node.Name);
                throw new SlabException(
                    SlabErrorCode.Unavailable,
                    $"{string.Join(", ", slow)} did not hold {(calls.Count == 1 ? "its" : "their")} volumes' writes within {GroupHoldSetupTimeout.TotalSeconds:0} s; the group snapshot is abandoned and writes resumed");
            }

            foreach (var (node, call) in calls)
            {
                await Translated(node, () => call.RequestStream.WriteAsync(new V1.GroupHoldRequest { Cut = new V1.GroupHoldCut() }, abort.Token)).ConfigureAwait(false);
            }

            allHeld.TrySetResult();
            var detachedCuts = detached.Select(async volume =>
            {
                var boundary = DetachedBoundary(volume);
                var member = members[volume.Id];
                await ReflinkReplicasAsync(volume, member.SnapshotId, member.PendingRevision, boundary.Epoch, boundary.InSyncNodeIds, abort.Token).ConfigureAwait(false);
                boundaries[volume.Id] = boundary;
            }).ToList();
            var remoteCuts = calls.Select(async c =>
            {
                var reply = await ExpectReplyAsync(c.Node, c.Call, V1.GroupHoldReply.StepOneofCase.Cut, abort.Token).ConfigureAwait(false);
                foreach (var b in reply.Cut.Boundaries)
                {
                    boundaries[b.VolumeId] = new WriteBoundary((long)b.Epoch, [.. b.InSyncNodeIds]);
                }
            }).ToList();
            foreach (var (volumeId, boundary) in await localCut.ConfigureAwait(false))
            {
                boundaries[volumeId] = boundary;
            }

            await Task.WhenAll(detachedCuts.Concat(remoteCuts)).ConfigureAwait(false);
            foreach (var (node, call) in calls)
            {
                await Translated(node, () => call.RequestStream.CompleteAsync()).ConfigureAwait(false);
            }

            var missing = members.Keys.FirstOrDefault(id => !boundaries.ContainsKey(id));
            return missing is null
                ? new Dictionary<string, WriteBoundary>(boundaries, StringComparer.Ordinal)
                : throw new SlabException(SlabErrorCode.Unavailable, $"volume {missing} was not cut (its node's answer lacked it)");
        }
        catch
        {
            allHeld.TrySetCanceled(CancellationToken.None);
            await abort.CancelAsync().ConfigureAwait(false);
            throw;
        }
        finally
        {
            foreach (var (_, call) in calls)
            {
                call.Dispose();
            }
        }
    }

    private static async Task<V1.GroupHoldReply> ExpectReplyAsync(
        NodeInfo node, AsyncDuplexStreamingCall<V1.GroupHoldRequest, V1.GroupHoldReply> call, V1.GroupHoldReply.StepOneofCase step, CancellationToken cancellationToken)
    {
        var moved = false;
        await Translated(node, async () => moved = await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false)).ConfigureAwait(false);
        if (!moved || call.ResponseStream.Current.StepCase != step)
        {
            throw new SlabException(SlabErrorCode.Unavailable, $"node {node.Name} ended its part of the group snapshot before it {(step == V1.GroupHoldReply.StepOneofCase.Held ? "held" : "cut")} its volumes");
        }

        return call.ResponseStream.Current;
    }

    private static async Task Translated(NodeInfo node, Func<Task> call)
    {
        try
        {
            await call().ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw PeerApi.Translate(e, node) is var translated && translated.Code == SlabErrorCode.Unavailable
                ? new SlabException(SlabErrorCode.Unavailable, $"group snapshot on {node.Name}: {e.Status.Detail}", e)
                : new SlabException(translated.Code, $"group snapshot on {node.Name}: {translated.Message}", e);
        }
    }

    /// <summary>
    /// This node's part of a group snapshot: holds the writes of its controllers of the members'
    /// volumes (in volume-id order, so concurrent groups cannot deadlock), calls
    /// <paramref name="onHeld"/> (which returns once every node holds, or throws to give up), then
    /// reflinks each volume's in-sync replicas and releases. Returns each volume's boundary.
    /// </summary>
    /// <exception cref="SlabException">A volume is not attached here (FailedPrecondition); a flush or reflink failed.</exception>
    public async Task<IReadOnlyList<(string VolumeId, WriteBoundary Boundary)>> HoldAndCutAsync(
        IReadOnlyList<GroupSnapshotMember> members, Func<CancellationToken, Task> onHeld, CancellationToken cancellationToken)
    {
        var ordered = members.OrderBy(m => m.VolumeId, StringComparer.Ordinal).ToList();
        var volumesHeld = new List<(VolumeInfo Volume, GroupSnapshotMember Member)>();
        foreach (var member in ordered)
        {
            var volume = Require(member.VolumeId);
            if (volume.Attachment is not { Purpose: AttachPurpose.Host or AttachPurpose.Resync } attachment || attachment.NodeId != runtime.LocalNodeId)
            {
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is no longer attached on {runtime.Options.NodeName}; take the group snapshot again");
            }

            volumesHeld.Add((volume, member));
        }

        return await HoldFromAsync(0, []).ConfigureAwait(false);

        async Task<IReadOnlyList<(string, WriteBoundary)>> HoldFromAsync(int index, List<(VolumeInfo Volume, GroupSnapshotMember Member, WriteBoundary Boundary)> held)
        {
            if (index == volumesHeld.Count)
            {
                await onHeld(cancellationToken).ConfigureAwait(false);
                await Task.WhenAll(held.Select(h => ReflinkReplicasAsync(h.Volume, h.Member.SnapshotId, h.Member.PendingRevision, h.Boundary.Epoch, h.Boundary.InSyncNodeIds, cancellationToken)))
                    .ConfigureAwait(false);
                return [.. held.Select(h => (h.Volume.Id, h.Boundary))];
            }

            var (volume, member) = volumesHeld[index];
            return await volumes.AtWriteBoundaryAsync(
                volume.Id,
                (boundary, _) => HoldFromAsync(index + 1, [.. held, (volume, member, boundary)]),
                cancellationToken).ConfigureAwait(false);
        }
    }
}
