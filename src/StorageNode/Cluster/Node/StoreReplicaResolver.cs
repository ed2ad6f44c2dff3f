using Slab.Cluster.State;
using Slab.Replication;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Cluster.Node;

/// <summary>
/// Finds this node's replicas for the replication server: a volume the cluster state places here and
/// the store holds, opened once (a lease on the volume manager) and kept open until the volume
/// leaves this node or slabd stops. The epoch a replica accepts is the volume's epoch in this node's
/// read copy of the state, so a controller that was fenced by a take-over is refused as soon as the
/// new epoch reaches this node.
/// </summary>
/// <remarks>Thread-safe; <see cref="TryGetReplica"/> allocates only when it opens a volume.</remarks>
public sealed class StoreReplicaResolver(ClusterRuntime runtime, VolumeManager volumes, VolumeStore store) : IReplicaResolver
{
    private static readonly TimeSpan EpochWait = TimeSpan.FromSeconds(3);

    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, VolumeManager.VolumeLease> _open = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, string> _idStrings = new();

    public bool TryGetReplica(Guid volumeId, out ReplicaHandle replica)
    {
        replica = default;
        if (!TryGetPlacedHere(volumeId, out var volume))
        {
            return false;
        }

        VolumeManager.VolumeLease? lease;
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
                    lease = volumes.OpenVolumeLease(record);
                }
                catch (Common.SlabException)
                {
                    return false; // busy (being deleted or restored)
                }

                _open.Add(volumeId, lease);
            }
        }

        replica = new ReplicaHandle(lease.Target, volume.Epoch);
        return true;
    }

    public async ValueTask<bool> TryAdvanceEpochAsync(Guid volumeId, long epoch, CancellationToken cancellationToken)
    {
        if (!TryGetPlacedHere(volumeId, out var volume))
        {
            return false;
        }

        if (volume.Epoch >= epoch)
        {
            return true;
        }

        try
        {
            await runtime.WaitForRevisionAsync(runtime.State.Current.Revision + 1, EpochWait, cancellationToken).ConfigureAwait(false);
        }
        catch (Common.SlabException)
        {
            return false;
        }

        return TryGetPlacedHere(volumeId, out volume) && volume.Epoch >= epoch;
    }

    /// <summary>Closes the replica of <paramref name="volumeId"/> if the server had it open (before it is deleted or restored).</summary>
    public async ValueTask ReleaseAsync(string volumeId)
    {
        if (!Guid.TryParseExact(volumeId, "N", out var id))
        {
            return;
        }

        _idStrings.TryRemove(id, out _);
        VolumeManager.VolumeLease? lease;
        lock (_gate)
        {
            if (!_open.Remove(id, out lease))
            {
                return;
            }
        }

        await lease.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Closes every replica the server opened (shutdown).</summary>
    public async ValueTask ReleaseAllAsync()
    {
        List<VolumeManager.VolumeLease> leases;
        lock (_gate)
        {
            leases = [.. _open.Values];
            _open.Clear();
        }

        foreach (var lease in leases)
        {
            await lease.DisposeAsync().ConfigureAwait(false);
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
