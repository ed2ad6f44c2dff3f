using Slab.Block;
using Slab.Cluster.State;
using Slab.Replication;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Cluster.Node;

/// <summary>
/// Finds this node's replicas for the replication server: a volume the cluster state places here and
/// the store holds, opened once (a lease on the volume manager's <see cref="LocalReplica"/>, the same
/// file and epoch gate a controller on this node uses) and kept open until the volume leaves this
/// node or slabd stops. The gate starts at the epoch persisted with the replica and is raised when a
/// request carries an epoch the read copy of the state has committed, or when the reconciler sees
/// the epoch move; either way older requests are drained first and refused after.
/// </summary>
/// <remarks>
/// <para>It also serves this node's committed snapshot copies, read-only, under the snapshot's id in
/// place of a volume id: a replica that lacks a snapshot (rebuilt after it was taken) copies it from
/// here. Such a copy is opened at its first request and closed when idle for
/// <see cref="SnapshotIdleTime"/> (<see cref="CloseIdleSnapshots"/>) or when its volume is released;
/// its gate stays at epoch 0 (the copier's requests carry 0), and writes are refused as read-only.</para>
/// <para>Thread-safe; <see cref="TryGetReplica"/> allocates only when it opens a volume or a snapshot.</para>
/// </remarks>
public sealed class StoreReplicaResolver(ClusterRuntime runtime, VolumeManager volumes, IVolumeStore store) : IReplicaResolver
{
    /// <summary>How long a snapshot copy served to another node stays open after its last request.</summary>
    public static readonly TimeSpan SnapshotIdleTime = TimeSpan.FromSeconds(30);

    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, VolumeManager.LocalReplicaLease> _open = [];
    private readonly Dictionary<Guid, ServedSnapshot> _snapshots = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, string> _idStrings = new();

    public bool TryGetReplica(Guid volumeId, out ReplicaHandle replica)
    {
        replica = default;
        if (!TryGetPlacedHere(volumeId, out var volume))
        {
            return TryGetSnapshot(volumeId, out replica);
        }

        VolumeManager.LocalReplicaLease? lease;
        lock (_gate)
        {
            if (!_open.TryGetValue(volumeId, out lease))
            {
                var record = store.FindVolume(volume.Id);
                if (record is null)
                {
                    return false;
                }

                try
                {
                    lease = volumes.OpenLocalReplica(record);
                }
                catch (Common.SlabException)
                {
                    return false; // busy (being deleted or restored)
                }

                _open.Add(volumeId, lease);
            }
        }

        replica = new ReplicaHandle(lease.Replica.File, lease.Replica.Gate);
        return true;
    }

    public async ValueTask<bool> TryAdvanceEpochAsync(Guid volumeId, long epoch, CancellationToken cancellationToken)
    {
        VolumeManager.LocalReplicaLease? lease;
        lock (_gate)
        {
            _open.TryGetValue(volumeId, out lease);
        }

        return lease is not null && await lease.Replica.TryAdvanceAsync(epoch, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Closes the replica of <paramref name="volumeId"/> if the server had it open (before it is deleted or restored).</summary>
    public void Release(string volumeId)
    {
        if (!Guid.TryParseExact(volumeId, "N", out var id))
        {
            return;
        }

        _idStrings.TryRemove(id, out _);
        VolumeManager.LocalReplicaLease? lease;
        List<ServedSnapshot> snapshots;
        lock (_gate)
        {
            _open.Remove(id, out lease);
            snapshots = RemoveSnapshotsLocked(s => s.Lease.VolumeId == volumeId);
        }

        lease?.Dispose();
        DisposeAll(snapshots);
    }

    /// <summary>Closes the snapshot copies served to other nodes that no request used for <see cref="SnapshotIdleTime"/> (the reconciler calls it each pass).</summary>
    public void CloseIdleSnapshots()
    {
        var idleSince = runtime.Time.GetTimestamp() - (long)(SnapshotIdleTime.TotalSeconds * runtime.Time.TimestampFrequency);
        List<ServedSnapshot> idle;
        lock (_gate)
        {
            idle = RemoveSnapshotsLocked(s => s.LastUsed < idleSince);
        }

        DisposeAll(idle);
    }

    private List<ServedSnapshot> RemoveSnapshotsLocked(Func<ServedSnapshot, bool> which)
    {
        var removed = new List<ServedSnapshot>();
        foreach (var (id, served) in _snapshots)
        {
            if (which(served))
            {
                removed.Add(served);
                _snapshots.Remove(id);
            }
        }

        return removed;
    }

    private static void DisposeAll(List<ServedSnapshot> snapshots)
    {
        foreach (var served in snapshots)
        {
            served.Lease.Dispose();
        }
    }

    /// <summary>This node's committed copy of the snapshot <paramref name="snapshotId"/>, opened read-only (see the remarks).</summary>
    private bool TryGetSnapshot(Guid snapshotId, out ReplicaHandle replica)
    {
        if (TryTouchServed(snapshotId, opened: null, out replica))
        {
            return true;
        }

        // The search goes through every volume of the state: outside the lock every replica's requests take.
        if (!TryFindHeldSnapshot(snapshotId.ToString("N"), out var record, out var snapshot))
        {
            return false;
        }

        VolumeManager.SnapshotLease lease;
        try
        {
            lease = volumes.OpenSnapshotLease(record, snapshot);
        }
        catch (Common.SlabException)
        {
            return false; // being deleted or restored here
        }

        TryTouchServed(snapshotId, lease, out replica);
        return true;
    }

    /// <summary>
    /// Under the lock: the served copy of <paramref name="snapshotId"/>, marked used now; when none is
    /// served and <paramref name="opened"/> is given, that one is added (else it is closed: another
    /// request opened the copy meanwhile).
    /// </summary>
    private bool TryTouchServed(Guid snapshotId, VolumeManager.SnapshotLease? opened, out ReplicaHandle replica)
    {
        ServedSnapshot? served;
        lock (_gate)
        {
            if (!_snapshots.TryGetValue(snapshotId, out served) && opened is not null)
            {
                served = new ServedSnapshot(opened);
                _snapshots.Add(snapshotId, served);
                opened = null;
            }

            if (served is not null)
            {
                served.LastUsed = runtime.Time.GetTimestamp();
            }
        }

        opened?.Dispose();
        replica = served is null ? default : new ReplicaHandle(served.Lease.Target, served.Gate);
        return served is not null;
    }

    /// <summary>Finds a committed snapshot whose copy the cluster records on this node's replica and the store has.</summary>
    private bool TryFindHeldSnapshot(string snapshotId, out VolumeRecord record, out SnapshotRecord snapshot)
    {
        record = null!;
        snapshot = null!;
        foreach (var volume in runtime.State.Current.Volumes.Values)
        {
            if (volume.FindSnapshotById(snapshotId) is not { Pending: false } info)
            {
                continue;
            }

            var holdsIt = info.HoldingReplicas(volume).Any(r => r.NodeId == runtime.LocalNodeId);
            if (holdsIt && store.FindVolume(volume.Id) is { } local && local.FindSnapshotById(snapshotId) is { } copy)
            {
                (record, snapshot) = (local, copy);
                return true;
            }

            return false;
        }

        return false;
    }

    private sealed class ServedSnapshot(VolumeManager.SnapshotLease lease)
    {
        public VolumeManager.SnapshotLease Lease { get; } = lease;

        public EpochGate Gate { get; } = new(0);

        /// <summary>Timestamp (<see cref="ClusterRuntime.Time"/>) of its last request; read and written under the resolver's lock.</summary>
        public long LastUsed;
    }

    /// <summary>Closes every replica the server opened (shutdown).</summary>
    public void ReleaseAll()
    {
        List<VolumeManager.LocalReplicaLease> leases;
        List<ServedSnapshot> snapshots;
        lock (_gate)
        {
            leases = [.. _open.Values];
            _open.Clear();
            snapshots = [.. _snapshots.Values];
            _snapshots.Clear();
        }

        foreach (var lease in leases)
        {
            lease.Dispose();
        }

        DisposeAll(snapshots);
    }

    private bool TryGetPlacedHere(Guid volumeId, out VolumeInfo volume)
    {
        volume = null!;

        // The state is keyed by the id's string: formatted once per volume that exists, not per request.
        var known = _idStrings.TryGetValue(volumeId, out var id);
        id ??= volumeId.ToString("N");
        if (!runtime.State.Current.Volumes.TryGetValue(id, out var found) || found.FindReplica(runtime.LocalNodeId) is null)
        {
            return false;
        }

        if (!known)
        {
            _idStrings.TryAdd(volumeId, id);
        }

        volume = found;
        return true;
    }
}
