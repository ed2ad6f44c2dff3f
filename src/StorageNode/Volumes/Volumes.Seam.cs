using Slab.Block;

namespace Slab.Volumes;

// The volume layer: one VolumeController per open volume on the node where it is used. A controller
// is a block target over its replica targets (Block.IReplicaTarget: a LocalReplicaTarget for this
// node's replica, a Replication.RemoteReplicaTarget for another node's); it fans writes out, picks
// replicas for reads, drops a failing replica through the IReplicaSetAuthority (a Raft transaction in
// cluster mode) before it acknowledges a write without it, and drains writes for snapshots.
// VolumeManager owns the controllers and this node's open replicas (LocalReplica: file + epoch gate,
// shared by the controller here and the replica server), validates every request, and is the
// IExportCatalog that the NBD frontend serves. AttachExportCatalog is the private catalog for host
// attachments.

/// <summary>The part a replica plays in its volume's I/O, as the controller sees it.</summary>
public enum ReplicaMode
{
    /// <summary>Has every acknowledged write; writes are acknowledged only when it has them; reads may come from it.</summary>
    InSync,

    /// <summary>Being resynced: receives new writes behind the copy cursor; not counted for acknowledgement; never read.</summary>
    CatchingUp,

    /// <summary>Failed or unreachable: receives nothing; the controller records what it misses.</summary>
    Faulted,
}

/// <summary>One replica handed to a controller: where it is, how to reach it, the part it plays.</summary>
/// <param name="NodeId">The node holding it (unique within a volume).</param>
/// <param name="NodeName">Names it in logs and errors.</param>
/// <param name="Target">Carries the controller's epoch on every request; the controller disposes it.</param>
/// <param name="Mode">Its mode when the controller opens.</param>
/// <param name="IsLocal">On this node: preferred for reads.</param>
public sealed record ReplicaMember(string NodeId, string NodeName, IReplicaTarget Target, ReplicaMode Mode, bool IsLocal);

/// <summary>What <see cref="IReplicaSetAuthority.ChangeReplicaAsync"/> achieved.</summary>
public enum ReplicaChangeOutcome
{
    /// <summary>The change is committed; the volume's epoch is now the returned one.</summary>
    Committed,

    /// <summary>The volume's epoch had moved on: another controller owns the volume; this one must stop.</summary>
    Fenced,
}

/// <summary>The outcome of a replica change and the volume's epoch after it.</summary>
public readonly record struct ReplicaChangeResult(ReplicaChangeOutcome Outcome, long Epoch);

/// <summary>
/// Where a controller records changes of its replica set. In cluster mode a Raft transaction
/// (compare-and-set on the epoch); a controller without an authority cannot change its set, so a
/// failing replica fails the I/O.
/// </summary>
/// <remarks>Called from I/O and resync paths, at most one call per controller at a time.</remarks>
public interface IReplicaSetAuthority
{
    /// <summary>
    /// Records that the replica on <paramref name="nodeId"/> of <paramref name="volumeId"/> is now
    /// in <paramref name="mode"/>, if the volume's epoch still is <paramref name="expectedEpoch"/>.
    /// Leaving or entering the in-sync set raises the epoch (a drop before a write is acknowledged
    /// without the replica; a promotion after a resync); Faulted ↔ CatchingUp keeps it. Returns
    /// once the change is committed (or known refused).
    /// </summary>
    /// <exception cref="Common.SlabException">The change could not be committed (no quorum, timeout, refused): the I/O that needed it must fail.</exception>
    Task<ReplicaChangeResult> ChangeReplicaAsync(string volumeId, string nodeId, ReplicaMode mode, long expectedEpoch, string reason, CancellationToken cancellationToken);
}

/// <summary>
/// Tells whether the control plane has committed an epoch of a volume, so that this node's replica
/// may accept requests carrying it (cluster mode: the node's read copy of the Raft state, waited for
/// briefly). Without one, a replica accepts no epoch above the one it was opened with.
/// </summary>
public interface IEpochSource
{
    /// <summary>True when <paramref name="epoch"/> is committed for <paramref name="volumeId"/>; never throws except on cancellation.</summary>
    ValueTask<bool> IsCommittedAsync(string volumeId, long epoch, CancellationToken cancellationToken);
}
