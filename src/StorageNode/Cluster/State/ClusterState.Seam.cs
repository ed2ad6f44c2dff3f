using System.Net;

namespace Slab.Cluster.State;

// The cluster state: one Raft-replicated, immutable ClusterState (nodes, volumes with replica sets,
// epochs, attachments, snapshots). Commands are proposed through the leader and applied in log order
// by the pure ClusterStateTransitions.Apply on every voter; each voter keeps a read copy.
// ClusterStateNode hosts the Raft member (DotNext RaftCluster over TCP, WriteAheadLog and a
// snapshotting ClusterStateMachine) plus a small TCP channel that forwards proposals and membership
// changes from followers to the leader. Block data never goes through here.

/// <summary>The replicated cluster state as the rest of slabd uses it.</summary>
public interface IClusterStateStore
{
    /// <summary>This node's read copy: every command this node has applied. May lag the leader by a heartbeat.</summary>
    ClusterState Current { get; }

    /// <summary>Member id of the current leader; null while there is none (election, no quorum).</summary>
    string? LeaderId { get; }

    /// <summary>The voters of the current Raft configuration, as this node sees them.</summary>
    IReadOnlyList<ClusterMemberInfo> Members { get; }

    /// <summary>
    /// Replicates <paramref name="command"/> through the leader (forwarding it when this node is not
    /// the leader) and returns its result once it is committed and applied on this node, so
    /// <see cref="Current"/> includes it when the task completes. A rejection is a result, not an
    /// exception. A command without a timestamp is stamped with this node's clock.
    /// </summary>
    /// <exception cref="ClusterStateException">
    /// <see cref="ClusterStateError.NoQuorum"/>: no leader accepted the proposal within the no-quorum
    /// timeout (not applied), or the leader that took it lost its majority and none followed within
    /// that timeout (<see cref="ClusterStateException.MayHaveBeenApplied"/>). <see cref="ClusterStateError.OutcomeUnknown"/>: the leader took it
    /// but no result arrived in time; it may or may not be applied (creates are idempotent per request id).
    /// <see cref="ClusterStateError.Stopped"/>: the node is not running.
    /// </exception>
    Task<CommandResult> ProposeAsync(ClusterCommand command, CancellationToken cancellationToken);

    /// <summary>
    /// Like <see cref="ProposeAsync"/>, but the leader first passes the command through its
    /// <see cref="ILeaderCommandPreparer"/> (e.g. placement of a new volume's replicas, which needs
    /// the leader's live view of the nodes), then replicates the prepared command. A preparation
    /// refusal is returned as a rejected result; nothing is replicated then.
    /// </summary>
    /// <exception cref="ClusterStateException">As <see cref="ProposeAsync"/>.</exception>
    Task<CommandResult> ProposePreparedAsync(ClusterCommand command, CancellationToken cancellationToken);


    /// <summary>True while this node knows a leader that holds a majority (writes can succeed).</summary>
    bool HasQuorum { get; }

    /// <summary>
    /// Raised whenever <see cref="Current"/> changes (after each applied command on a voter, after
    /// each refresh on a client), with the new state; handlers must be quick and must not throw.
    /// </summary>
    event EventHandler<ClusterState>? CurrentChanged;

    /// <summary>Raised when this node learns of a new leader (or of none: null).</summary>
    event EventHandler<string?>? LeaderChanged;
}

/// <summary>
/// The leader's last step before it replicates a command proposed with
/// <see cref="IClusterStateStore.ProposePreparedAsync"/>. Runs on the leader only, concurrently for
/// concurrent proposals; must be quick and must not throw.
/// </summary>
public interface ILeaderCommandPreparer
{
    /// <summary>
    /// Returns the command to replicate (usually <paramref name="command"/> completed, e.g. with a
    /// placement), or a rejection to return to the proposer without replicating anything.
    /// </summary>
    CommandPreparation Prepare(ClusterCommand command, ClusterState current);
}

/// <summary>Outcome of <see cref="ILeaderCommandPreparer.Prepare"/>: exactly one of the two is set.</summary>
public readonly record struct CommandPreparation(ClusterCommand? Command, CommandResult? Rejection)
{
    public static CommandPreparation Replicate(ClusterCommand command) => new(command, null);

    public static CommandPreparation Refuse(Rejection rejection, string message) => new(null, CommandResult.Reject(rejection, message));
}

/// <summary>A Raft voter as this node sees it.</summary>
public sealed record ClusterMemberInfo(string MemberId, EndPoint RaftEndPoint, bool IsLeader, bool IsLocal, bool IsAvailable);

/// <summary>A voter of the initial configuration (or one being added): identity and both endpoints.</summary>
/// <param name="MemberId">Stable id (normally the node id).</param>
/// <param name="RaftEndPoint">Raft consensus TCP endpoint; this is the member's identity in Raft.</param>
/// <param name="ProposalEndPoint">Endpoint of the forwarding channel that takes proposals when the member leads.</param>
public sealed record ClusterPeer(string MemberId, IPEndPoint RaftEndPoint, IPEndPoint ProposalEndPoint);

/// <summary>Why a proposal or membership change could not be carried out (as opposed to a command's rejection).</summary>
public enum ClusterStateError
{
    /// <summary>No leader accepted the request in time: fewer than a majority of voters are reachable.</summary>
    NoQuorum,

    /// <summary>The leader accepted the request but its result did not arrive in time; it may or may not have been applied.</summary>
    OutcomeUnknown,

    /// <summary>The node is not started, or is stopping.</summary>
    Stopped,

    /// <summary>The leader refused a membership change (e.g. the new member did not answer).</summary>
    MembershipChangeFailed,

    /// <summary>
    /// The leader refused the request without attempting it (it could not decode it, or cannot take
    /// that kind of request): certainly not applied, and retrying the same request will not help.
    /// </summary>
    Refused,
}

/// <summary>A typed failure of the replication machinery; classify by <see cref="Error"/>, never by message.</summary>
public sealed class ClusterStateException(ClusterStateError error, string message, Exception? innerException = null)
    : Exception(message, innerException)
{
    public ClusterStateError Error { get; } = error;

    /// <summary>
    /// False: the change was certainly not applied. True: a leader had taken it before failing, so it
    /// may yet be applied (read the state or retry idempotently). Always true for OutcomeUnknown.
    /// </summary>
    public bool MayHaveBeenApplied { get; init; }
}
