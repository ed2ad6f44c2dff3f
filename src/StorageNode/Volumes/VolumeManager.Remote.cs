using System.Collections.Concurrent;
using System.Collections.Immutable;
using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

/// <summary>
/// Volumes of the cluster (cluster mode): found through the cluster state, their controllers opened
/// over every replica (this node's and other nodes' over the node-to-node data protocol), replica
/// faults recorded in Raft. Implemented by the cluster layer.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public interface IClusterVolumeSource
{
    /// <summary>
    /// Finds a volume of the cluster that has no replica on this node, as a replica node keeps it
    /// (size, filesystem flags), with the volume's current epoch. Null when the cluster has no such
    /// volume or a replica is on this node (the store has it).
    /// </summary>
    /// <exception cref="SlabException">No replica node can be reached (Unavailable).</exception>
    Task<VolumeRecord?> FindAsync(string nameOrId, CancellationToken cancellationToken);

    /// <summary>
    /// Opens the controller of <paramref name="volume"/> on this node over its replicas, at the
    /// volume's current epoch; <paramref name="openLocal"/> opens this node's replica when it holds one.
    /// <paramref name="io"/> gives the clock and latency observer; the limits come from the cluster's record.
    /// </summary>
    /// <exception cref="SlabException">No in-sync replica can be reached.</exception>
    VolumeController OpenController(VolumeRecord volume, Func<Block.IReplicaTarget> openLocal, VolumeIoSettings io);

    /// <summary>
    /// Opens the replica of <paramref name="volume"/> on <paramref name="nodeId"/> as the cluster
    /// state describes it, for a controller open here (a replica added while it is open).
    /// </summary>
    /// <exception cref="SlabException">The volume has no replica there, or its node cannot be addressed.</exception>
    ReplicaMember OpenMember(VolumeRecord volume, string nodeId, Func<Block.IReplicaTarget> openLocal);

    /// <summary>Persists <see cref="VolumeRecord.Formatted"/> and <see cref="VolumeRecord.FilesystemGrowPending"/> on the replicas' nodes; returns the record as saved.</summary>
    Task<VolumeRecord> SaveFlagsAsync(VolumeRecord volume, CancellationToken cancellationToken);
}

public sealed partial class VolumeManager
{
    /// <summary>Remote volumes this node has found for attaching, by id; kept while attached here.</summary>
    private readonly ConcurrentDictionary<string, VolumeRecord> _remote = new(StringComparer.Ordinal);

    /// <summary>Where cluster volumes are found and their controllers opened; null on a single node.</summary>
    public IClusterVolumeSource? ClusterVolumes { get; set; }

    /// <summary>Finds a volume for attaching: this node's store first, then the cluster.</summary>
    private async Task<VolumeRecord> RequireForAttachAsync(string nameOrId, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(nameOrId))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "volume name is empty");
        }

        if (_store.FindVolume(nameOrId) is { } local)
        {
            return local;
        }

        if (ClusterVolumes is { } source && await source.FindAsync(nameOrId, cancellationToken).ConfigureAwait(false) is { } remote)
        {
            // A fresh look replaces what an earlier attach cached (the epoch may have moved on).
            return _remote[remote.Id] = remote;
        }

        return Require(nameOrId);
    }

    /// <summary>Finds a volume in the store or among the remote volumes attached here; null when neither has it.</summary>
    private VolumeRecord? FindLocalOrAttached(string nameOrId)
    {
        if (_store.FindVolume(nameOrId) is { } local)
        {
            return local;
        }

        if (_remote.TryGetValue(nameOrId, out var byId))
        {
            return byId;
        }

        foreach (var remote in _remote.Values)
        {
            if (remote.Name == nameOrId)
            {
                return remote;
            }
        }

        return null;
    }

    /// <summary>
    /// The export behind the attach socket: a volume attached here or being attached (local, or
    /// remote and found for attaching); null for anything else, so a device left by an earlier slabd
    /// reconnects only once it is adopted (<see cref="AdoptSurvivorsAsync"/>), never around the
    /// cluster's fencing.
    /// </summary>
    internal VolumeRecord? FindAttachable(string name) =>
        name.Contains('@', StringComparison.Ordinal) || FindLocalOrAttached(name) is not { } volume
            || (GetAttachment(volume.Id) is null && !_attachingHere.ContainsKey(volume.Id))
            ? null
            : volume;

    /// <summary>Saves filesystem flags where the replicas live.</summary>
    private async Task<VolumeRecord> SaveFlagsAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        var local = _store.FindVolume(volume.Id);
        if (ClusterVolumes is { } source && (local is null || local.ClusterId is not null))
        {
            var saved = await source.SaveFlagsAsync(volume, cancellationToken).ConfigureAwait(false);
            if (local is null)
            {
                _remote[volume.Id] = saved;
            }

            return _store.FindVolume(volume.Id) ?? saved;
        }

        if (local is null)
        {
            throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found");
        }

        return await _store.SaveFilesystemFlagsAsync(local, volume, cancellationToken).ConfigureAwait(false);
    }

    private void ForgetRemote(string volumeId)
    {
        if (_store.FindVolume(volumeId) is null)
        {
            _remote.TryRemove(volumeId, out _);
        }
    }

    /// <summary>
    /// Brings the controller open here for <paramref name="volumeId"/> (if any) to the cluster's
    /// replica set <paramref name="nodeIds"/>: opens the replicas added to it (they are rebuilt by the
    /// controller's next resync) and stops using the replicas removed from it. False when no
    /// controller is open here or nothing changed.
    /// </summary>
    public async Task<bool> FollowReplicaSetAsync(string volumeId, IReadOnlyCollection<string> nodeIds, CancellationToken cancellationToken)
    {
        if (OpenController(volumeId) is not { } controller || ClusterVolumes is not { } cluster)
        {
            return false;
        }

        var changed = false;
        var current = controller.Replicas.Select(r => r.NodeId).ToHashSet(StringComparer.Ordinal);
        foreach (var nodeId in current)
        {
            if (!nodeIds.Contains(nodeId))
            {
                changed |= await controller.RemoveReplicaAsync(nodeId, cancellationToken).ConfigureAwait(false);
            }
        }

        foreach (var nodeId in nodeIds)
        {
            if (current.Contains(nodeId))
            {
                continue;
            }

            var known = _remote.GetValueOrDefault(volumeId) ?? _store.FindVolume(volumeId)
                ?? throw new SlabException(SlabErrorCode.NotFound, $"volume {volumeId} is open here but not known");
            var member = cluster.OpenMember(known with { SizeBytes = controller.Size }, nodeId, () => OpenLocalReplicaTarget(known, epoch: 0));
            if (!await controller.AddReplicaAsync(member, cancellationToken).ConfigureAwait(false))
            {
                member.Target.Dispose();
                continue;
            }

            changed = true;
        }

        return changed;
    }

    /// <summary>
    /// Opens the volume's controller on this node with no host device (the one open here already, or
    /// a new one), until the result is disposed: for an internal resync attachment (cluster mode, the
    /// controller resyncs or rebuilds a replica of a detached volume) and for a replica check.
    /// </summary>
    /// <exception cref="SlabException">Unknown volume; no in-sync replica reachable.</exception>
    public async Task<ControllerLease> OpenControllerAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var volume = await RequireForAttachAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        try
        {
            return new ControllerLease(this, volume.Id, OpenVolumeLease(volume));
        }
        catch
        {
            ForgetRemote(volume.Id);
            throw;
        }
    }

    /// <summary>Keeps a volume's controller open on this node without a host device until disposed.</summary>
    public sealed class ControllerLease : IAsyncDisposable
    {
        private readonly VolumeManager _owner;
        private readonly VolumeLease _lease;

        internal ControllerLease(VolumeManager owner, string volumeId, VolumeLease lease)
        {
            _owner = owner;
            VolumeId = volumeId;
            _lease = lease;
        }

        public string VolumeId { get; }

        public VolumeController Controller => _lease.Controller;

        public async ValueTask DisposeAsync()
        {
            await _lease.DisposeAsync().ConfigureAwait(false);
            if (_owner.GetAttachment(VolumeId) is null)
            {
                _owner.ForgetRemote(VolumeId);
            }
        }
    }

    /// <summary>
    /// Compares the in-sync replicas of a volume (<see cref="VolumeController.CheckAsync"/>) through
    /// its controller on this node (the attached one when it is attached here).
    /// </summary>
    /// <exception cref="SlabException">Unknown volume; no replica reachable; a replica failed a read (Unavailable).</exception>
    public async Task<ReplicaCheckReport> CheckReplicasAsync(string nameOrId, CancellationToken cancellationToken)
    {
        await using var lease = await OpenControllerAsync(nameOrId, cancellationToken).ConfigureAwait(false);
        try
        {
            return await lease.Controller.CheckAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Block.BlockTargetException e)
        {
            throw new SlabException(SlabErrorCode.Unavailable, $"volume '{lease.Controller.VolumeName}' could not be checked: {e.Message}", e);
        }
    }

    /// <summary>Validates a create request exactly as <see cref="CreateAsync"/> does and returns the normalized values.</summary>
    /// <exception cref="SlabException">InvalidArgument or FailedPrecondition, naming the bad value.</exception>
    public (long SizeBytes, int Repl, string Fs, ImmutableSortedDictionary<string, string> Labels) ValidateSpec(string name, VolumeSpecification spec)
    {
        VolumeNames.Validate(name, "volume");
        return (ValidateSize(spec.SizeBytes), ValidateRepl(spec.Repl), ValidateFs(spec.Fs), VolumeNames.ValidateLabels(spec.Labels));
    }

    /// <summary>Validates a requested new size (positive, within the limit, rounded up to 4 KiB).</summary>
    public long ValidateNewSize(ulong sizeBytes) => ValidateSize(sizeBytes);

    /// <summary>
    /// After the replica of a remote volume attached here has grown to <paramref name="newSizeBytes"/>,
    /// widens this node's controller and grows the attached device and its filesystems.
    /// </summary>
    public async Task FollowRemoteGrowAsync(string volumeId, long newSizeBytes, CancellationToken cancellationToken)
    {
        if (!_remote.TryGetValue(volumeId, out var volume) || volume.SizeBytes >= newSizeBytes)
        {
            return;
        }

        OpenController(volumeId)?.Grow(newSizeBytes);
        volume = _remote[volumeId] = volume with { SizeBytes = newSizeBytes };
        await GrowAttachedDeviceAsync(volume, cancellationToken).ConfigureAwait(false);
    }
}
