using System.Collections.Concurrent;
using System.Collections.Immutable;
using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

/// <summary>
/// Volumes whose replica lives on another node (cluster mode): found through the cluster, opened
/// over the node-to-node data protocol. Implemented by the cluster layer.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public interface IRemoteVolumeSource
{
    /// <summary>
    /// Finds a volume of the cluster whose replica is on another node, as that node keeps it (size,
    /// filesystem flags), with the volume's current epoch. Null when the cluster has no such volume or
    /// its replica is on this node.
    /// </summary>
    /// <exception cref="SlabException">The replica's node cannot be reached (Unavailable).</exception>
    Task<VolumeRecord?> FindAsync(string nameOrId, CancellationToken cancellationToken);

    /// <summary>Opens the volume's remote replica for I/O, carrying <see cref="VolumeRecord.Epoch"/> on every request.</summary>
    IReplicaTarget OpenReplica(VolumeRecord volume);

    /// <summary>Persists <see cref="VolumeRecord.Formatted"/> and <see cref="VolumeRecord.FilesystemGrowPending"/> on the replica's node; returns the record as saved.</summary>
    Task<VolumeRecord> SaveFlagsAsync(VolumeRecord volume, CancellationToken cancellationToken);
}

public sealed partial class VolumeManager
{
    /// <summary>Remote volumes this node has found for attaching, by id; kept while attached here.</summary>
    private readonly ConcurrentDictionary<string, VolumeRecord> _remote = new(StringComparer.Ordinal);

    /// <summary>Where volumes held by other nodes are found; null on a single node.</summary>
    public IRemoteVolumeSource? RemoteVolumes { get; set; }

    /// <summary>True when the volume's replica is in this node's store (not reached over the network).</summary>
    public bool IsLocal(string volumeId) => _store.FindVolume(volumeId) is not null;

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

        if (RemoteVolumes is { } source && await source.FindAsync(nameOrId, cancellationToken).ConfigureAwait(false) is { } remote)
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

    /// <summary>The export behind the attach socket: a local volume, or a remote one being attached here.</summary>
    internal VolumeRecord? FindAttachable(string name) => name.Contains('@', StringComparison.Ordinal) ? null : FindLocalOrAttached(name);

    private IReplicaTarget OpenReplicaTarget(VolumeRecord volume)
    {
        if (_store.FindVolume(volume.Id) is not null)
        {
            return _store.OpenReplica(volume);
        }

        var source = RemoteVolumes ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found");
        return source.OpenReplica(_remote.GetValueOrDefault(volume.Id) ?? volume);
    }

    /// <summary>Saves filesystem flags where the replica lives.</summary>
    private async Task<VolumeRecord> SaveFlagsAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        if (_store.FindVolume(volume.Id) is { } local)
        {
            return await _store.SaveVolumeAsync(local with { Formatted = volume.Formatted, FilesystemGrowPending = volume.FilesystemGrowPending }, cancellationToken)
                .ConfigureAwait(false);
        }

        var source = RemoteVolumes ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' not found");
        var saved = await source.SaveFlagsAsync(volume, cancellationToken).ConfigureAwait(false);
        _remote[volume.Id] = saved;
        return saved;
    }

    private void ForgetRemote(string volumeId)
    {
        if (_store.FindVolume(volumeId) is null)
        {
            _remote.TryRemove(volumeId, out _);
        }
    }

    /// <summary>Validates a create request exactly as <see cref="CreateAsync"/> does and returns the normalized values.</summary>
    /// <exception cref="SlabException">InvalidArgument or FailedPrecondition, naming the bad value.</exception>
    public (long SizeBytes, int Repl, string Fs, ImmutableSortedDictionary<string, string> Labels) ValidateSpec(string name, VolumeSpecification spec)
    {
        VolumeNames.Validate(name, "volume");
        return (ValidateSize(spec.SizeBytes), ValidateRepl(spec.Repl), ValidateFs(spec.Fs), ValidateLabels(spec.Labels));
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
