using System.Collections.Immutable;
using System.Text.Json.Serialization;
using Slab.Store;

namespace Slab.Cluster.State;

/// <summary>Life-cycle status of a node as the cluster records it.</summary>
public enum NodeStatus
{
    /// <summary>Serving; may receive new replicas and attachments.</summary>
    Online,

    /// <summary>Not reachable (set by the leader's liveness reconciler); keeps its replicas.</summary>
    Offline,

    /// <summary>Taken out of service by an operator; receives no new replicas or attachments.</summary>
    Maintenance,

    /// <summary>Being drained before removal; receives no new replicas or attachments.</summary>
    Decommissioning,
}

/// <summary>State of one replica of a volume.</summary>
public enum ReplicaState
{
    /// <summary>Has every acknowledged write; writes wait for it.</summary>
    InSync,

    /// <summary>Receives new writes and is being resynced; not yet counted for acknowledgement.</summary>
    CatchingUp,

    /// <summary>Failed or cut off; receives nothing until it is resynced.</summary>
    Out,

    /// <summary>
    /// A new replica (<c>ha-update</c> up, a replacement) being copied in full from an in-sync one;
    /// receives new writes behind the copy cursor; not counted for acknowledgement, never read.
    /// Promoted to <see cref="InSync"/> like a catching-up replica.
    /// </summary>
    Rebuilding,
}

/// <summary>Capacity summary of one storage pool of a node.</summary>
public sealed record PoolSummary
{
    public required string Id { get; init; }

    public IoPriority IoPriority { get; init; } = IoPriority.Medium;

    public long TotalBytes { get; init; }

    public long UsedBytes { get; init; }

    public long ProvisionedBytes { get; init; }
}

/// <summary>A node of the cluster. Immutable.</summary>
public sealed record NodeInfo
{
    /// <summary>Stable node id (the node's <c>node.json</c> id); unique.</summary>
    public required string Id { get; init; }

    /// <summary>Human name; unique cluster-wide.</summary>
    public required string Name { get; init; }

    /// <summary>Addresses other nodes reach it on ("host:port" or IPs), in the node's order of preference.</summary>
    public ImmutableArray<string> Addresses { get; init; } = [];

    public string Zone { get; init; } = "";

    public string Rack { get; init; } = "";

    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ClusterState.EmptyLabels;

    public NodeStatus Status { get; init; } = NodeStatus.Online;

    public ImmutableArray<PoolSummary> Pools { get; init; } = [];

    /// <summary>True when the node is one of the Raft voters (the internal KVDB).</summary>
    public bool IsKvdbVoter { get; init; }

    /// <summary>When the node first registered (the registering command's timestamp).</summary>
    public DateTimeOffset Registered { get; init; }

    /// <summary>When <see cref="Status"/> last changed (the changing command's timestamp).</summary>
    public DateTimeOffset StatusSince { get; init; }
}

/// <summary>Cluster-wide settings (<c>slabctl cluster options</c>, pxctl's cluster options).</summary>
public sealed record ClusterOptions
{
    /// <summary>pxctl's default: 1440 minutes (a day).</summary>
    public const int DefaultReplMoveTimeoutSeconds = 1440 * 60;

    /// <summary>
    /// Seconds a node may be offline (or in maintenance) before the leader places replacements of its
    /// replicas on other nodes and rebuilds them; 0 never moves them. slabctl shows and takes minutes.
    /// </summary>
    public int ReplMoveTimeoutSeconds { get; init; } = DefaultReplMoveTimeoutSeconds;

    /// <summary>Bytes per second each node copies at most for resyncs and rebuilds together; 0 is unlimited.</summary>
    public long ResyncBytesPerSecond { get; init; }
}

/// <summary>What a volume was asked to be. Immutable.</summary>
public sealed record VolumeSpec
{
    /// <summary>Size in bytes, a positive multiple of 4096; only grows.</summary>
    public required long SizeBytes { get; init; }

    /// <summary>Replica count wanted, 1-3.</summary>
    public int Repl { get; init; } = 1;

    /// <summary>"ext4", "xfs" or "none".</summary>
    public string Fs { get; init; } = "ext4";

    public IoPriority IoPriority { get; init; } = IoPriority.Medium;

    /// <summary>QoS: read/write IOPS and bandwidth limits the volume's controller enforces; changeable online.</summary>
    public Common.IoLimits Limits { get; init; } = Common.IoLimits.None;

    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ClusterState.EmptyLabels;

    /// <summary>Node labels every replica's node must carry (key = value); empty places anywhere.</summary>
    public ImmutableSortedDictionary<string, string> NodeSelector { get; init; } = ClusterState.EmptyLabels;

    /// <summary><c>--nodes</c>: node ids, names or addresses the replicas may go to; empty places anywhere.</summary>
    public ImmutableArray<string> Nodes { get; init; } = [];

    /// <summary><c>--zones</c>: the node zones the replicas may go to; empty places in any zone.</summary>
    public ImmutableArray<string> Zones { get; init; } = [];

    /// <summary><c>--racks</c>: the node racks the replicas may go to; empty places in any rack.</summary>
    public ImmutableArray<string> Racks { get; init; } = [];
}

/// <summary>One replica of a volume: where it lives and whether it has every acknowledged write.</summary>
public sealed record ReplicaInfo
{
    public required string NodeId { get; init; }

    public required string PoolId { get; init; }

    public ReplicaState State { get; init; } = ReplicaState.CatchingUp;

    /// <summary>
    /// Tells this replica apart from an earlier one of the same volume on the same node (chosen by
    /// the proposer when the replica is placed; empty for replicas placed at create). What a
    /// controller records about a replica (its dirty-region map) belongs to one incarnation only.
    /// </summary>
    public string Incarnation { get; init; } = "";

    /// <summary>
    /// For a replacement being rebuilt (repl-move-timeout, decommission): the node whose replica it
    /// replaces. When it is promoted in sync, that replica leaves the set in the same transition.
    /// Empty otherwise.
    /// </summary>
    public string Replaces { get; init; } = "";

    /// <summary>When <see cref="State"/> last changed, or the replica was placed (the command's timestamp); alerts date from it.</summary>
    public DateTimeOffset StateSince { get; init; }
}

/// <summary>Why a volume is attached on a node.</summary>
public enum AttachPurpose
{
    /// <summary>A block device on the host (attach, mount): the volume is in use there.</summary>
    Host,

    /// <summary>
    /// Internal: a node runs the detached volume's controller only to resync or rebuild a replica.
    /// A host attach on any node takes it over (on another node with an epoch bump that fences the
    /// resyncing controller); delete does not wait for it.
    /// </summary>
    Resync,

    /// <summary>
    /// Internal: a node takes a snapshot of the detached volume (the attachment keeps host attaches
    /// out while every replica reflinks). A host attach anywhere takes it over with an epoch bump,
    /// which makes the snapshot's commit fail; delete does not wait for it.
    /// </summary>
    Snapshot,

    /// <summary>
    /// Internal: a node restores the detached volume from a snapshot. Only a takeover from a dead
    /// holder ends it early; that takeover keeps <see cref="AttachmentInfo.RestoreSource"/>'s replica
    /// (in sync when the restore began, restored or not, whole either way) and rebuilds the others
    /// from it, so an interrupted restore never leaves replicas that differ.
    /// </summary>
    Restore,
}

/// <summary>Where a volume is attached (exclusively).</summary>
public sealed record AttachmentInfo
{
    public required string NodeId { get; init; }

    public AttachPurpose Purpose { get; init; } = AttachPurpose.Host;

    /// <summary>The block device on that node, e.g. <c>/dev/nbd0</c>.</summary>
    public string Device { get; init; } = "";

    public DateTimeOffset Since { get; init; }

    /// <summary>For <see cref="AttachPurpose.Restore"/>: the snapshot being restored; empty otherwise.</summary>
    public string RestoreSnapshotId { get; init; } = "";

    /// <summary>
    /// For <see cref="AttachPurpose.Restore"/>: the node of the in-sync replica restored first, the
    /// one every other replica is rebuilt from if the restore is interrupted; empty otherwise.
    /// </summary>
    public string RestoreSource { get; init; } = "";
}

/// <summary>A snapshot of a volume; its name is unique within the volume ("VOL@SNAP").</summary>
public sealed record SnapshotInfo
{
    public required string Id { get; init; }

    public required string Name { get; init; }

    /// <summary>The volume's size when the snapshot was taken.</summary>
    public long SizeBytes { get; init; }

    public DateTimeOffset Created { get; init; }

    /// <summary>
    /// True from <see cref="CreateSnapshot"/> until <see cref="CommitSnapshot"/>: the replicas are
    /// being reflinked; the name is taken, the snapshot cannot be used yet.
    /// </summary>
    public bool Pending { get; init; }

    /// <summary>The replicas that hold the snapshot (the in-sync ones when it was taken), by node and incarnation.</summary>
    public ImmutableArray<SnapshotHolder> Holders { get; init; } = [];

    /// <summary>The holders that are still replicas of <paramref name="volume"/> (same node, same incarnation).</summary>
    public IEnumerable<ReplicaInfo> HoldingReplicas(VolumeInfo volume)
    {
        foreach (var holder in Holders)
        {
            if (volume.FindReplica(holder.NodeId) is { } replica && replica.Incarnation == holder.Incarnation)
            {
                yield return replica;
            }
        }
    }
}

/// <summary>A replica holding a snapshot: its node and the replica's incarnation there.</summary>
public sealed record SnapshotHolder(string NodeId, string Incarnation);

/// <summary>What a clone was made from: a snapshot of a volume (a clone of a live volume is made from a snapshot taken for it).</summary>
public sealed record VolumeOrigin
{
    public required string VolumeId { get; init; }

    public required string SnapshotId { get; init; }

    /// <summary>"VOL" or "VOL@SNAP" as the user named it (shown by inspect).</summary>
    public string Reference { get; init; } = "";
}

/// <summary>A volume of the cluster. Immutable.</summary>
public sealed record VolumeInfo
{
    /// <summary>Stable id (chosen by the proposer); never reused.</summary>
    public required string Id { get; init; }

    /// <summary>Unique cluster-wide.</summary>
    public required string Name { get; init; }

    public required VolumeSpec Spec { get; init; }

    /// <summary>Replicas on distinct nodes, in placement order.</summary>
    public ImmutableArray<ReplicaInfo> Replicas { get; init; } = [];

    /// <summary>
    /// Fencing epoch: starts at 1, bumped whenever the set of in-sync replicas changes and when an
    /// attachment is taken over. Never decreases. Every replica I/O carries it; replicas reject lower.
    /// </summary>
    public long Epoch { get; init; } = 1;

    public AttachmentInfo? Attachment { get; init; }

    public ImmutableArray<SnapshotInfo> Snapshots { get; init; } = [];

    public DateTimeOffset Created { get; init; }

    /// <summary>For a clone: the snapshot its in-sync replicas were reflinked from at create; null otherwise.</summary>
    public VolumeOrigin? Origin { get; init; }

    /// <summary>The client request id of the create; a retry of that request returns this volume.</summary>
    public string CreateRequestId { get; init; } = "";

    /// <summary>Finds a snapshot by name or id; null when none.</summary>
    public SnapshotInfo? FindSnapshot(string nameOrId)
    {
        foreach (var snapshot in Snapshots)
        {
            if (snapshot.Id == nameOrId || snapshot.Name == nameOrId)
            {
                return snapshot;
            }
        }

        return null;
    }

    /// <summary>Finds a snapshot by id only (a name may look like another snapshot's id); null when none.</summary>
    public SnapshotInfo? FindSnapshotById(string id)
    {
        foreach (var snapshot in Snapshots)
        {
            if (snapshot.Id == id)
            {
                return snapshot;
            }
        }

        return null;
    }

    /// <summary>Finds the replica on <paramref name="nodeId"/>; null when none.</summary>
    public ReplicaInfo? FindReplica(string nodeId)
    {
        foreach (var replica in Replicas)
        {
            if (replica.NodeId == nodeId)
            {
                return replica;
            }
        }

        return null;
    }
}

/// <summary>
/// The whole replicated cluster state. Immutable and deterministic: the same commands applied in the
/// same order to the same state give equal states (and byte-equal encodings) on every node.
/// Dictionaries are ordered by ordinal key so iteration and encoding order never depend on history.
/// Change it only through <see cref="ClusterStateTransitions.Apply"/>.
/// </summary>
public sealed record ClusterState
{
    /// <summary>Format version of the encoded state.</summary>
    public const int CurrentFormat = 1;

    internal static readonly ImmutableSortedDictionary<string, string> EmptyLabels =
        ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal);

    /// <summary>The state of a new cluster.</summary>
    public static ClusterState Empty { get; } = new();

    public int Format { get; init; } = CurrentFormat;

    public ClusterOptions Options { get; init; } = new();

    /// <summary>Number of accepted commands applied so far; increases by one per accepted command.</summary>
    public long Revision { get; init; }

    /// <summary>Nodes by id.</summary>
    public ImmutableSortedDictionary<string, NodeInfo> Nodes { get; init; } =
        ImmutableSortedDictionary.Create<string, NodeInfo>(StringComparer.Ordinal);

    /// <summary>Volumes by id.</summary>
    public ImmutableSortedDictionary<string, VolumeInfo> Volumes { get; init; } =
        ImmutableSortedDictionary.Create<string, VolumeInfo>(StringComparer.Ordinal);

    /// <summary>Volume ids by volume name (derived from <see cref="Volumes"/>; not encoded).</summary>
    [JsonIgnore]
    public ImmutableSortedDictionary<string, string> VolumeIdsByName { get; init; } = EmptyLabels;

    /// <summary>Finds a volume by id, then by name; null when none.</summary>
    public VolumeInfo? FindVolume(string idOrName)
    {
        if (Volumes.TryGetValue(idOrName, out var volume))
        {
            return volume;
        }

        return VolumeIdsByName.TryGetValue(idOrName, out var id) ? Volumes[id] : null;
    }

    /// <summary>Finds a node by id, then by name; null when none. Name lookup is a scan.</summary>
    public NodeInfo? FindNode(string idOrName)
    {
        if (Nodes.TryGetValue(idOrName, out var node))
        {
            return node;
        }

        foreach (var candidate in Nodes.Values)
        {
            if (candidate.Name == idOrName)
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Returns this state with <see cref="VolumeIdsByName"/> rebuilt from <see cref="Volumes"/>.</summary>
    internal ClusterState WithRebuiltIndexes()
    {
        var names = EmptyLabels.ToBuilder();
        foreach (var volume in Volumes.Values)
        {
            names[volume.Name] = volume.Id;
        }

        return this with { VolumeIdsByName = names.ToImmutable() };
    }
}
