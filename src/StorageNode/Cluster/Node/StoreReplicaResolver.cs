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
/// <remarks>Thread-safe; <see cref="TryGetReplica"/> allocates only when it opens a volume.</remarks>
public sealed class StoreReplicaResolver(ClusterRuntime runtime, VolumeManager volumes, IVolumeStore store) : IReplicaResolver
{
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, VolumeManager.LocalReplicaLease> _open = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, string> _idStrings = new();

    public bool TryGetReplica(Guid volumeId, out ReplicaHandle replica)
    {
        replica = default;
        if (!TryGetPlacedHere(volumeId, out var volume))
        {
            return false;
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
        lock (_gate)
        {
            if (!_open.Remove(id, out lease))
            {
                return;
            }
        }

        lease.Dispose();
    }

    /// <summary>Closes every replica the server opened (shutdown).</summary>
    public void ReleaseAll()
    {
        List<VolumeManager.LocalReplicaLease> leases;
        lock (_gate)
        {
            leases = [.. _open.Values];
            _open.Clear();
        }

        foreach (var lease in leases)
        {
            lease.Dispose();
        }
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
