using Slab.Common;

namespace Slab.Volumes;

/// <summary>
/// Where a controller keeps the dirty-region maps of its faulted replicas on this node:
/// <c>DATA/dirty/VOLUME-REPLICA.map</c> (REPLICA: the node id, and the replica's incarnation when it has one), each written crash-safely (<see cref="DurableFile"/>). A map
/// that exists proves that every write the replica missed since it was dropped is marked in it (it is
/// saved before the drop's write is acknowledged and before any write to a new region is); a missing
/// map means nothing is known and a resync copies everything.
/// </summary>
/// <remarks>Thread-safe for distinct (volume, node) pairs; the controller serializes saves of one map.</remarks>
public sealed class DirtyMapStore
{
    private readonly string _directory;

    public DirtyMapStore(string directory)
    {
        _directory = directory;
        DurableFile.CreateDirectory(directory);
    }

    public DirtyRegionMap? Load(string volumeId, string replicaKey, long volumeBytes)
    {
        var path = PathOf(volumeId, replicaKey);
        try
        {
            return File.Exists(path) ? DirtyRegionMap.Decode(File.ReadAllBytes(path), volumeBytes) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Writes the map durably.</summary>
    /// <exception cref="IOException">The file could not be written.</exception>
    public void Save(string volumeId, string replicaKey, DirtyRegionMap map) => Save(volumeId, replicaKey, map.Encode());

    /// <summary>Writes a map's encoding (<see cref="DirtyRegionMap.Encode"/>) durably.</summary>
    /// <exception cref="IOException">The file could not be written.</exception>
    public void Save(string volumeId, string replicaKey, byte[] encoded) => DurableFile.WriteAllBytes(PathOf(volumeId, replicaKey), encoded);

    public void Delete(string volumeId, string replicaKey)
    {
        var path = PathOf(volumeId, replicaKey);
        if (File.Exists(path))
        {
            File.Delete(path);
            DurableFile.SyncDirectory(_directory);
        }
    }

    private string PathOf(string volumeId, string replicaKey) => Path.Combine(_directory, $"{volumeId}-{replicaKey}.map");
}
