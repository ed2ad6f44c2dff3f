using Grpc.Core;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Replication;
using Slab.Store;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Cluster.Node;

/// <summary>
/// Cluster volumes for the volume layer on this node: found in the cluster state, their controllers
/// opened over every replica (this node's through its gate, other nodes' as
/// <see cref="RemoteReplicaTarget"/>s over the replication protocol), replica faults recorded in Raft
/// as a compare-and-set on the epoch, and epochs confirmed for this node's replicas from the read copy.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class ClusterVolumeSource(ClusterRuntime runtime, PeerApi peers, ReplicationOptions replication, TimeProvider time, ILoggerFactory loggers)
    : IClusterVolumeSource, IReplicaSetAuthority, IEpochSource
{
    private static readonly TimeSpan EpochWait = TimeSpan.FromSeconds(3);

    private readonly ILogger _remoteLogger = loggers.CreateLogger<RemoteReplicaTarget>();
    private readonly ILogger _controllerLogger = loggers.CreateLogger<VolumeController>();
    private readonly Lazy<DirtyMapStore> _dirtyMaps = new(() => new DirtyMapStore(Path.Combine(runtime.Options.DataDirectory, "dirty")));

    public async Task<VolumeRecord?> FindAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var state = runtime.State.Current;
        if (state.FindVolume(nameOrId) is not { } volume)
        {
            return null;
        }

        if (volume.FindReplica(runtime.LocalNodeId) is not null)
        {
            // Ours: make sure the reconciler has created it, then the store serves it.
            await runtime.SyncReplicaAsync(volume.Id, state.Revision, cancellationToken).ConfigureAwait(false);
            return null;
        }

        SlabException? last = null;
        foreach (var replica in InSyncFirst(volume))
        {
            if (!state.Nodes.TryGetValue(replica.NodeId, out var node) || !runtime.IsAlive(node.Id))
            {
                continue;
            }

            try
            {
                var local = await peers.Internal(node)
                    .SyncReplicaAsync(new V1.SyncReplicaRequest { VolumeId = volume.Id, MinRevision = (ulong)state.Revision }, PeerApi.Call(cancellationToken))
                    .ConfigureAwait(false);
                return ToRecord(volume, local);
            }
            catch (RpcException e)
            {
                last = PeerApi.Translate(e, node);
            }
        }

        throw last ?? Unreachable(state, volume);
    }

    public VolumeController OpenController(VolumeRecord volume, Func<IReplicaTarget> openLocal, VolumeIoSettings io)
    {
        var state = runtime.State.Current;
        var info = state.FindVolume(volume.Id) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found in the cluster");
        if (!info.Replicas.Any(r => r.State == ReplicaState.InSync && runtime.IsAlive(r.NodeId)))
        {
            throw Unreachable(state, info);
        }

        var members = new List<ReplicaMember>(info.Replicas.Length);
        try
        {
            foreach (var replica in info.Replicas)
            {
                members.Add(OpenMember(state, info, replica, volume.SizeBytes, openLocal));
            }

            return new VolumeController(info.Id, info.Name, volume.SizeBytes, info.Epoch, members, this, _controllerLogger, _dirtyMaps.Value, runtime.ResyncThrottle,
                io with { Limits = info.Spec.Limits });
        }
        catch
        {
            foreach (var member in members)
            {
                member.Target.Dispose();
            }

            throw;
        }
    }

    public ReplicaMember OpenMember(VolumeRecord volume, string nodeId, Func<IReplicaTarget> openLocal)
    {
        var state = runtime.State.Current;
        var info = state.FindVolume(volume.Id) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found in the cluster");
        var replica = info.FindReplica(nodeId) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{info.Name}' has no replica on node {nodeId}");
        return OpenMember(state, info, replica, volume.SizeBytes, openLocal);
    }

    /// <summary>One replica as a controller member: this node's through <paramref name="openLocal"/>, another node's over the replication protocol.</summary>
    private ReplicaMember OpenMember(ClusterState state, VolumeInfo info, ReplicaInfo replica, long sizeBytes, Func<IReplicaTarget> openLocal)
    {
        var mode = replica.State switch
        {
            ReplicaState.InSync => ReplicaMode.InSync,
            ReplicaState.Rebuilding => ReplicaMode.Rebuilding,
            _ => ReplicaMode.Faulted,
        };
        if (replica.NodeId == runtime.LocalNodeId)
        {
            return new ReplicaMember(replica.NodeId, runtime.Options.NodeName, openLocal(), mode, IsLocal: true, replica.Incarnation);
        }

        var node = state.Nodes.GetValueOrDefault(replica.NodeId)
            ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"a replica of volume '{info.Name}' is on node {replica.NodeId}, which is not in the cluster");
        var target = OpenRemote(node, Guid.ParseExact(info.Id, "N"), sizeBytes, info.Epoch);
        return new ReplicaMember(replica.NodeId, node.Name, target, mode, IsLocal: false, replica.Incarnation);
    }

    /// <summary>
    /// The copy of <paramref name="snapshot"/> that the replica on <paramref name="node"/> holds, read
    /// over the replication protocol (addressed by the snapshot's id, at epoch 0; read-only there).
    /// </summary>
    /// <exception cref="SlabException">The node has no replication endpoint in the cluster state (Unavailable).</exception>
    public RemoteReplicaTarget OpenSnapshotCopy(NodeInfo node, SnapshotInfo snapshot)
        => OpenRemote(node, Guid.ParseExact(snapshot.Id, "N"), snapshot.SizeBytes, epoch: 0);

    /// <summary>
    /// The ranges of <paramref name="holder"/>'s copy of <paramref name="snapshot"/> that may differ
    /// from its copy of the older snapshot <paramref name="basisId"/> (NodeInternal.SnapshotChanges), or null
    /// when it cannot tell (it lacks the basis, cannot map its files, or is unreachable): the caller
    /// then compares everything.
    /// </summary>
    public async Task<IReadOnlyList<(long Offset, long Length)>?> SnapshotChangesAsync(NodeInfo holder, string volumeId, SnapshotInfo snapshot, string basisId, CancellationToken cancellationToken)
    {
        var request = new V1.SnapshotChangesRequest { VolumeId = volumeId, SnapshotId = snapshot.Id, BaseSnapshotId = basisId };
        var ranges = new List<(long Offset, long Length)>();
        try
        {
            using var call = peers.Internal(holder).SnapshotChanges(request, PeerApi.Call(cancellationToken));
            while (await call.ResponseStream.MoveNext(cancellationToken).ConfigureAwait(false))
            {
                var batch = call.ResponseStream.Current;
                if (batch.Offsets.Count != batch.Lengths.Count)
                {
                    return null;
                }

                for (var i = 0; i < batch.Offsets.Count; i++)
                {
                    ranges.Add(((long)batch.Offsets[i], (long)batch.Lengths[i]));
                }
            }
        }
        catch (RpcException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }

        // In order, inside the snapshot, not overlapping: anything else is not an answer to rely on.
        long end = 0;
        foreach (var (offset, length) in ranges)
        {
            if (offset < end || length <= 0 || offset + length > snapshot.SizeBytes)
            {
                return null;
            }

            end = offset + length;
        }

        return ranges;
    }

    private RemoteReplicaTarget OpenRemote(NodeInfo node, Guid id, long sizeBytes, long epoch)
    {
        var data = NodeEndpoints.Parse(NodeEndpoints.From(node.Addresses).Replication)
            ?? throw new SlabException(SlabErrorCode.Unavailable, $"node {node.Name} has no replication endpoint in the cluster state");
        return new RemoteReplicaTarget(
            id,
            sizeBytes,
            epoch,
            new TcpReplicaConnector(data, node.Name, runtime.Options.Advertise),
            replication,
            Guid.ParseExact(runtime.LocalNodeId, "N"),
            time,
            _remoteLogger);
    }

    public async Task<VolumeRecord> SaveFlagsAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        var state = runtime.State.Current;
        var info = state.FindVolume(volume.Id) ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found in the cluster");
        VolumeRecord? saved = null;
        SlabException? last = null;
        foreach (var replica in InSyncFirst(info))
        {
            if (replica.NodeId == runtime.LocalNodeId)
            {
                var local = runtime.Store.FindVolume(info.Id);
                if (local is not null)
                {
                    local = await runtime.Store.SaveFilesystemFlagsAsync(local, volume, cancellationToken).ConfigureAwait(false);
                    saved ??= local;
                }

                continue;
            }

            if (!state.Nodes.TryGetValue(replica.NodeId, out var node) || !runtime.IsAlive(node.Id))
            {
                continue; // it keeps its old flags; attaching elsewhere reads them from an in-sync replica that is online first
            }

            try
            {
                var remote = await peers.Internal(node).SetReplicaFlagsAsync(
                    new V1.SetReplicaFlagsRequest { VolumeId = info.Id, Formatted = volume.Formatted, FilesystemGrowPending = volume.FilesystemGrowPending },
                    PeerApi.Call(cancellationToken)).ConfigureAwait(false);
                saved ??= ToRecord(info, remote) with { Epoch = volume.Epoch };
            }
            catch (RpcException e)
            {
                last = PeerApi.Translate(e, node);
            }
        }

        return saved ?? throw last ?? Unreachable(state, info);
    }

    public async Task<ReplicaChangeResult> ChangeReplicaAsync(string volumeId, string nodeId, ReplicaMode mode, long expectedEpoch, string reason, CancellationToken cancellationToken)
    {
        var state = mode switch
        {
            ReplicaMode.InSync => ReplicaState.InSync,
            ReplicaMode.CatchingUp => ReplicaState.CatchingUp,
            ReplicaMode.Rebuilding => ReplicaState.Rebuilding,
            _ => ReplicaState.Out,
        };
        State.CommandResult result;
        try
        {
            result = await runtime.State.ProposeAsync(
                new SetReplicaState { Volume = volumeId, NodeId = nodeId, State = state, ExpectedEpoch = expectedEpoch },
                cancellationToken).ConfigureAwait(false);
        }
        catch (ClusterStateException e)
        {
            throw new SlabException(SlabErrorCode.Unavailable, e.Message, e);
        }

        if (result.IsSuccess)
        {
            return new ReplicaChangeResult(ReplicaChangeOutcome.Committed, result.Epoch ?? runtime.State.Current.FindVolume(volumeId)?.Epoch ?? expectedEpoch);
        }

        if (result.Rejection is Rejection.ReplicaNotFound or Rejection.VolumeNotFound)
        {
            return new ReplicaChangeResult(ReplicaChangeOutcome.NotAMember, expectedEpoch);
        }

        if (result.Rejection == Rejection.StaleEpoch)
        {
            var now = runtime.State.Current.FindVolume(volumeId)?.Epoch ?? expectedEpoch + 1;
            return new ReplicaChangeResult(ReplicaChangeOutcome.Fenced, now);
        }

        throw new SlabException(SlabErrorCode.FailedPrecondition, result.Message);
    }

    public async ValueTask<bool> IsCommittedAsync(string volumeId, long epoch, CancellationToken cancellationToken)
    {
        if (runtime.State.Current.FindVolume(volumeId) is { } volume && volume.Epoch >= epoch)
        {
            return true;
        }

        try
        {
            // The proposer's commit may not have reached this node's read copy yet.
            await runtime.WaitForRevisionAsync(runtime.State.Current.Revision + 1, EpochWait, cancellationToken).ConfigureAwait(false);
        }
        catch (SlabException)
        {
            return false;
        }

        return runtime.State.Current.FindVolume(volumeId) is { } later && later.Epoch >= epoch;
    }

    private static IEnumerable<ReplicaInfo> InSyncFirst(VolumeInfo volume)
        => volume.Replicas.Where(r => r.State == ReplicaState.InSync).Concat(volume.Replicas.Where(r => r.State != ReplicaState.InSync));

    private SlabException Unreachable(ClusterState state, VolumeInfo volume)
    {
        var where = string.Join(", ", volume.Replicas.Select(r =>
            $"{(state.Nodes.TryGetValue(r.NodeId, out var n) ? n.Name : r.NodeId)} ({(runtime.IsAlive(r.NodeId) ? "online" : "offline")}, {r.State.ToString().ToLowerInvariant()})"));
        return new SlabException(
            SlabErrorCode.Unavailable,
            $"volume '{volume.Name}' has no in-sync replica on a node that is online (replicas: {where}); it is usable again when one of its in-sync replicas' nodes returns");
    }

    private VolumeRecord ToRecord(VolumeInfo volume, V1.LocalReplica local) => ClusterRuntime.LocalRecordOf(volume, runtime.Options.ClusterId) with
    {
        SizeBytes = (long)local.SizeBytes,
        Formatted = local.Formatted,
        FilesystemGrowPending = local.FilesystemGrowPending,
    };
}
