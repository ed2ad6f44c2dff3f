using System.Collections.Immutable;
using System.Text.Json.Serialization;

namespace Slab.Cluster.State;

/// <summary>
/// A change to the cluster state, proposed through Raft and applied by
/// <see cref="ClusterStateTransitions.Apply"/> on every node in log order. Commands are plain data:
/// everything apply needs (ids, timestamps) is chosen by the proposer, so apply is deterministic.
/// Volume references (<c>Volume</c>) accept a volume id or name; node references take node ids.
/// </summary>
[JsonPolymorphic(TypeDiscriminatorPropertyName = "$cmd")]
[JsonDerivedType(typeof(RegisterNode), "registerNode")]
[JsonDerivedType(typeof(UpdateNode), "updateNode")]
[JsonDerivedType(typeof(SetNodeStatus), "setNodeStatus")]
[JsonDerivedType(typeof(RemoveNode), "removeNode")]
[JsonDerivedType(typeof(CreateVolume), "createVolume")]
[JsonDerivedType(typeof(DeleteVolume), "deleteVolume")]
[JsonDerivedType(typeof(UpdateVolume), "updateVolume")]
[JsonDerivedType(typeof(SetReplicaSet), "setReplicaSet")]
[JsonDerivedType(typeof(SetReplicaState), "setReplicaState")]
[JsonDerivedType(typeof(ChangeReplication), "changeReplication")]
[JsonDerivedType(typeof(MoveReplica), "moveReplica")]
[JsonDerivedType(typeof(SetClusterOptions), "setClusterOptions")]
[JsonDerivedType(typeof(AttachVolume), "attach")]
[JsonDerivedType(typeof(DetachVolume), "detach")]
[JsonDerivedType(typeof(CreateSnapshot), "createSnapshot")]
[JsonDerivedType(typeof(DeleteSnapshot), "deleteSnapshot")]
[JsonDerivedType(typeof(CommitSnapshot), "commitSnapshot")]
[JsonDerivedType(typeof(AddSnapshotHolder), "addSnapshotHolder")]
[JsonDerivedType(typeof(FinishRestore), "finishRestore")]
public abstract record ClusterCommand
{
    /// <summary>When the proposer issued the command; recorded as creation/attach times. Set by the proposer.</summary>
    public DateTimeOffset Timestamp { get; init; }
}

/// <summary>Adds a node, or refreshes a known node's description (re-registration after a restart).</summary>
public sealed record RegisterNode : ClusterCommand
{
    public required string NodeId { get; init; }

    public required string Name { get; init; }

    public ImmutableArray<string> Addresses { get; init; } = [];

    public string Zone { get; init; } = "";

    public string Rack { get; init; } = "";

    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ClusterState.EmptyLabels;

    public ImmutableArray<PoolSummary> Pools { get; init; } = [];

    public bool IsKvdbVoter { get; init; }
}

/// <summary>Changes a node's description; null fields stay as they are.</summary>
public sealed record UpdateNode : ClusterCommand
{
    public required string NodeId { get; init; }

    public ImmutableArray<string>? Addresses { get; init; }

    public string? Zone { get; init; }

    public string? Rack { get; init; }

    public ImmutableSortedDictionary<string, string>? Labels { get; init; }

    public ImmutableArray<PoolSummary>? Pools { get; init; }

    public bool? IsKvdbVoter { get; init; }
}

public sealed record SetNodeStatus : ClusterCommand
{
    public required string NodeId { get; init; }

    public required NodeStatus Status { get; init; }
}

/// <summary>Removes a node; refused while it holds replicas or attachments.</summary>
public sealed record RemoveNode : ClusterCommand
{
    public required string NodeId { get; init; }
}

/// <summary>
/// Creates a volume. Idempotent per <see cref="RequestId"/>: applying the same request again returns
/// the same success; a different request for an existing name is rejected with AlreadyExists.
/// </summary>
public sealed record CreateVolume : ClusterCommand
{
    /// <summary>Client request id; retries of one request must carry the same id.</summary>
    public required string RequestId { get; init; }

    /// <summary>Id of the new volume, chosen by the proposer (e.g. a GUID in 32 hex digits).</summary>
    public required string VolumeId { get; init; }

    public required string Name { get; init; }

    public required VolumeSpec Spec { get; init; }

    /// <summary>Initial placement, if the proposer already chose one; may be empty.</summary>
    public ImmutableArray<ReplicaInfo> Replicas { get; init; } = [];

    /// <summary>A node (id or name) placement gives the first replica when it qualifies (the user's node: local reads); null = none.</summary>
    public string? PreferredNode { get; init; }

    /// <summary>
    /// For a clone: the committed snapshot it is made from. Its in-sync replicas must be on holders of
    /// that snapshot (their nodes reflink it); replicas elsewhere start rebuilding.
    /// </summary>
    public VolumeOrigin? Origin { get; init; }
}

/// <summary>Deletes a volume and its snapshots' records; refused while attached.</summary>
public sealed record DeleteVolume : ClusterCommand
{
    public required string Volume { get; init; }
}

/// <summary>Grows a volume, replaces its labels and/or its QoS limits; null fields stay as they are.</summary>
public sealed record UpdateVolume : ClusterCommand
{
    public required string Volume { get; init; }

    /// <summary>New size; must not be smaller than the current size.</summary>
    public long? SizeBytes { get; init; }

    /// <summary>Replaces every label (older proposers); null keeps them.</summary>
    public ImmutableSortedDictionary<string, string>? Labels { get; init; }

    /// <summary>Labels to set, applied to the labels the volume has when the command applies; an empty value removes the label.</summary>
    public ImmutableSortedDictionary<string, string>? LabelChanges { get; init; }

    /// <summary>New QoS limits (all four replace the old ones); null keeps them.</summary>
    public Common.IoLimits? Limits { get; init; }
}

/// <summary>
/// Replaces a volume's replica set. Bumps the epoch when the set of in-sync replicas changes.
/// A replica may be in sync in the new set only if it was in sync before (promotion goes through
/// <see cref="SetReplicaState"/>), unless the volume had no in-sync replica yet.
/// </summary>
public sealed record SetReplicaSet : ClusterCommand
{
    public required string Volume { get; init; }

    public required ImmutableArray<ReplicaInfo> Replicas { get; init; }

    /// <summary>When set, the command applies only if the volume's epoch still equals it (compare-and-set).</summary>
    public long? ExpectedEpoch { get; init; }
}

/// <summary>Changes one replica's state. Bumps the epoch when the replica enters or leaves the in-sync set.</summary>
public sealed record SetReplicaState : ClusterCommand
{
    public required string Volume { get; init; }

    public required string NodeId { get; init; }

    public required ReplicaState State { get; init; }

    /// <summary>When set, the command applies only if the volume's epoch still equals it (compare-and-set).</summary>
    public long? ExpectedEpoch { get; init; }
}

/// <summary>
/// Changes a volume's replica count (<c>volume ha-update</c>): the leader's preparation fills
/// <see cref="Replicas"/> with the new set (new replicas placed by policy, rebuilding; removed ones
/// left out), then apply checks it and records it with <see cref="Repl"/>. Keeps the epoch: a new
/// replica is not in sync, and a removed one is deleted and never read again, so no controller needs
/// fencing from it.
/// </summary>
public sealed record ChangeReplication : ClusterCommand
{
    public required string Volume { get; init; }

    /// <summary>The replica count wanted, 1..3; differs from the current count by the change.</summary>
    public required int Repl { get; init; }

    /// <summary>
    /// <c>--node</c>: raising, the node (id or name) the new replica goes to; lowering, the node
    /// whose replica is removed. Empty lets placement choose.
    /// </summary>
    public string Node { get; init; } = "";

    /// <summary>The new replica set, filled by the leader (empty until then); a command without it is refused by apply.</summary>
    public ImmutableArray<ReplicaInfo> Replicas { get; init; } = [];
}

/// <summary>
/// Starts moving a volume's replica off a node (offline past repl-move-timeout, or decommissioning):
/// the leader places a replacement by policy, which is added rebuilding with
/// <see cref="ReplicaInfo.Replaces"/> set; the old replica stays until the replacement is promoted
/// in sync, which removes it. One move per volume at a time.
/// </summary>
public sealed record MoveReplica : ClusterCommand
{
    public required string Volume { get; init; }

    /// <summary>The node whose replica moves.</summary>
    public required string FromNode { get; init; }

    /// <summary>The replacement, placed by the leader (null until then; apply refuses a command without it).</summary>
    public ReplicaInfo? Replacement { get; init; }
}

/// <summary>Changes cluster options; null fields stay as they are.</summary>
public sealed record SetClusterOptions : ClusterCommand
{
    public int? ReplMoveTimeoutSeconds { get; init; }

    public long? ResyncBytesPerSecond { get; init; }
}

/// <summary>
/// Attaches a volume on a node, exclusively. Refused if it is attached on another node, unless
/// <see cref="TakeOverFrom"/> names that node (the caller asserts it is dead): then the attachment
/// moves and the epoch is bumped, fencing the old holder. Attaching again on the same node succeeds.
/// </summary>
public sealed record AttachVolume : ClusterCommand
{
    public required string Volume { get; init; }

    public required string NodeId { get; init; }

    public string Device { get; init; } = "";

    /// <summary>The node id of a holder known to be dead, whose attachment may be taken over.</summary>
    public string? TakeOverFrom { get; init; }

    /// <summary>Host (default) or an internal attachment (resync, snapshot, restore), which only a detached volume takes.</summary>
    public AttachPurpose Purpose { get; init; } = AttachPurpose.Host;

    /// <summary>For <see cref="AttachPurpose.Restore"/>: the committed snapshot to restore.</summary>
    public string RestoreSnapshotId { get; init; } = "";

    /// <summary>For <see cref="AttachPurpose.Restore"/>: the node of an in-sync replica holding the snapshot, restored first.</summary>
    public string RestoreSource { get; init; } = "";
}

/// <summary>Detaches a volume from a node; succeeds if it is not attached at all.</summary>
public sealed record DetachVolume : ClusterCommand
{
    public required string Volume { get; init; }

    public required string NodeId { get; init; }

    /// <summary>When set, detaches only an attachment of this purpose (an ended resync must not end a host attach made meanwhile); otherwise changes nothing.</summary>
    public AttachPurpose? Purpose { get; init; }
}

/// <summary>
/// Records a pending snapshot (name reserved, not usable): the proposer then reflinks the in-sync
/// replicas at one write boundary and commits it with <see cref="CommitSnapshot"/>, or deletes it.
/// </summary>
public sealed record CreateSnapshot : ClusterCommand
{
    public required string Volume { get; init; }

    /// <summary>Id of the new snapshot, chosen by the proposer.</summary>
    public required string SnapshotId { get; init; }

    /// <summary>Unique within the volume.</summary>
    public required string Name { get; init; }
}

/// <summary>
/// Makes a pending snapshot usable once <see cref="Holders"/> reflinked their replicas at one write
/// boundary. Refused when the volume's epoch is not <see cref="ExpectedEpoch"/> (the in-sync set
/// changed, or a host attach took the volume over meanwhile) or a holder is not an in-sync replica.
/// </summary>
public sealed record CommitSnapshot : ClusterCommand
{
    public required string Volume { get; init; }

    public required string SnapshotId { get; init; }

    public required long ExpectedEpoch { get; init; }

    /// <summary>Node ids of the replicas that reflinked; at least one.</summary>
    public required ImmutableArray<string> Holders { get; init; }
}

/// <summary>
/// Records that the replica on <see cref="NodeId"/> (incarnation <see cref="Incarnation"/>) now holds
/// a copy of a committed snapshot, carried to it after the snapshot was taken (the replica was
/// rebuilt, or out of the in-sync set at the time). Refused when the snapshot is gone or pending, or
/// the node's replica is another incarnation (replaced meanwhile); a holder already recorded is a retry.
/// </summary>
public sealed record AddSnapshotHolder : ClusterCommand
{
    public required string Volume { get; init; }

    public required string SnapshotId { get; init; }

    public required string NodeId { get; init; }

    /// <summary>The incarnation of the replica whose node made the copy (the copy goes with it).</summary>
    public required string Incarnation { get; init; }
}

/// <summary>
/// Ends a restore that <see cref="NodeId"/> runs under a restore attachment: the replicas on
/// <see cref="Restored"/> hold the snapshot's data and are in sync, every other replica is rebuilt
/// from them (epoch bumped); with <see cref="Restored"/> empty the restore is abandoned and nothing
/// changes but the attachment.
/// </summary>
public sealed record FinishRestore : ClusterCommand
{
    public required string Volume { get; init; }

    public required string NodeId { get; init; }

    public ImmutableArray<string> Restored { get; init; } = [];
}

public sealed record DeleteSnapshot : ClusterCommand
{
    public required string Volume { get; init; }

    /// <summary>Snapshot id or name.</summary>
    public required string Snapshot { get; init; }
}

/// <summary>Why a command was not applied. <see cref="None"/> means it was.</summary>
public enum Rejection
{
    None,

    /// <summary>A field is malformed or out of range; the message names it.</summary>
    InvalidArgument,
    NodeNotFound,
    VolumeNotFound,
    SnapshotNotFound,
    ReplicaNotFound,

    /// <summary>The name (or id) is taken by another object or another create request.</summary>
    AlreadyExists,

    /// <summary>The volume is attached; the operation needs it detached.</summary>
    VolumeAttached,

    /// <summary>Exclusive attach: the volume is attached on another node.</summary>
    AttachedElsewhere,

    /// <summary>Detach from a node the volume is not attached on.</summary>
    NotAttachedHere,

    /// <summary>The node is not online (offline, maintenance, decommissioning).</summary>
    NodeUnavailable,

    /// <summary>The node still holds replicas or attachments.</summary>
    NodeInUse,

    /// <summary>The command's expected epoch is not the volume's epoch; re-read and retry.</summary>
    StaleEpoch,

    /// <summary>The change would leave the volume without an in-sync replica.</summary>
    LastInSyncReplica,

    /// <summary>The replica set breaks placement rules (distinct nodes, count, node selector).</summary>
    PlacementViolation,
}

/// <summary>
/// The outcome of applying a command: success (with the ids/epoch it produced) or a typed
/// rejection with a message a person can act on. Deterministic: every node computes the same result.
/// </summary>
public sealed record CommandResult
{
    public Rejection Rejection { get; init; }

    /// <summary>Empty on success; otherwise says what is wrong and what to do.</summary>
    public string Message { get; init; } = "";

    /// <summary>The volume the command acted on, when there is one.</summary>
    public string? VolumeId { get; init; }

    /// <summary>The snapshot the command created or deleted, when there is one.</summary>
    public string? SnapshotId { get; init; }

    /// <summary>The volume's epoch after the command, when it acted on a volume.</summary>
    public long? Epoch { get; init; }

    /// <summary>
    /// A state revision that includes the command, set by the leader that replicated it (0 when the
    /// command was refused before replication). Readers wait for their copy to reach it.
    /// </summary>
    public long Revision { get; init; }

    [JsonIgnore]
    public bool IsSuccess => Rejection == Rejection.None;

    public static CommandResult Ok(VolumeInfo? volume = null, string? snapshotId = null) =>
        new() { VolumeId = volume?.Id, Epoch = volume?.Epoch, SnapshotId = snapshotId };

    public static CommandResult Reject(Rejection rejection, string message) =>
        new() { Rejection = rejection, Message = message };

    public override string ToString() => IsSuccess ? "ok" : $"{Rejection}: {Message}";
}
