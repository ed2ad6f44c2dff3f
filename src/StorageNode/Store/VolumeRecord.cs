using System.Collections.Immutable;
using System.Text.Json.Serialization;

namespace Slab.Store;

/// <summary>
/// A volume as the store persists it (one <c>meta.json</c> per volume, next to its data). Immutable:
/// changes produce a new record that <see cref="IVolumeStore.SaveVolumeAsync"/> persists.
/// </summary>
public sealed record VolumeRecord
{
    /// <summary>Format version of the record on disk.</summary>
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    /// <summary>Stable id (32 hex digits); never reused.</summary>
    public required string Id { get; init; }

    /// <summary>Unique on this node; see <see cref="Common.VolumeNames"/> for the rules.</summary>
    public required string Name { get; init; }

    /// <summary>Size in bytes, a multiple of 4096.</summary>
    public required long SizeBytes { get; init; }

    public int Repl { get; init; } = 1;

    /// <summary>"ext4", "xfs" or "none".</summary>
    public string Fs { get; init; } = "ext4";

    public IoPriority IoPriority { get; init; } = IoPriority.Medium;

    /// <summary>QoS: the volume's read/write IOPS and bandwidth limits (none when absent from older records).</summary>
    public Common.IoLimits Limits { get; init; } = Common.IoLimits.None;

    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ImmutableSortedDictionary<string, string>.Empty;

    public DateTimeOffset Created { get; init; }

    /// <summary>For clones: "VOL" or "VOL@SNAP" they were cloned from.</summary>
    public string? Source { get; init; }

    /// <summary>Bumped whenever the replica set changes; every replica I/O will carry it.</summary>
    public long Epoch { get; init; } = 1;

    /// <summary>True once formatted with <see cref="Fs"/> by a mount.</summary>
    public bool Formatted { get; init; }

    /// <summary>The volume grew while its filesystem was not grown; the next mount grows it.</summary>
    public bool FilesystemGrowPending { get; init; }

    /// <summary>The drive holding the replica.</summary>
    public required string DriveId { get; init; }

    /// <summary>
    /// The cluster whose state owns this replica (its reconciler creates and removes it); null for a
    /// volume made by a single node. Only replicas of this node's cluster are ever removed for being
    /// absent from the cluster state.
    /// </summary>
    public string? ClusterId { get; init; }

    public ImmutableList<SnapshotRecord> Snapshots { get; init; } = [];

    public SnapshotRecord? FindSnapshot(string nameOrId)
    {
        foreach (var snapshot in Snapshots)
        {
            if (snapshot.Name == nameOrId || snapshot.Id == nameOrId)
            {
                return snapshot;
            }
        }

        return null;
    }

    /// <summary>Finds a snapshot by id only (a name may look like another snapshot's id); null when none.</summary>
    public SnapshotRecord? FindSnapshotById(string id) => Snapshots.Find(s => s.Id == id);
}

/// <summary>A snapshot: a reflink of the replica taken at a write boundary.</summary>
public sealed record SnapshotRecord
{
    public required string Id { get; init; }

    public required string Name { get; init; }

    /// <summary>The volume's size in bytes when the snapshot was taken.</summary>
    public required long SizeBytes { get; init; }

    public DateTimeOffset Created { get; init; }
}

/// <summary>The Slab superblock of a drive: <c>slab/drive.json</c> at the root of its filesystem.</summary>
public sealed record DriveLabel
{
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;

    public required string DriveId { get; init; }

    public required string NodeId { get; init; }

    public required string PoolId { get; init; }

    public DateTimeOffset Created { get; init; }

    /// <summary>Measured when the pool was created: 4 KiB random-write IOPS.</summary>
    public double MeasuredIops { get; init; }

    /// <summary>Measured when the pool was created: 1 MiB sequential-write MB/s.</summary>
    public double MeasuredMegabytesPerSecond { get; init; }
}

/// <summary>The node's identity: <c>node.json</c> in the data directory.</summary>
public sealed record NodeIdentity
{
    public required string NodeId { get; init; }

    public required string NodeName { get; init; }

    public DateTimeOffset Created { get; init; }
}

[JsonSourceGenerationOptions(WriteIndented = true, UseStringEnumConverter = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(VolumeRecord))]
[JsonSerializable(typeof(DriveLabel))]
[JsonSerializable(typeof(NodeIdentity))]
internal sealed partial class StoreJsonContext : JsonSerializerContext;
