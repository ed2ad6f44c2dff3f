using System.Net;

namespace Slab.Cluster.State;

/// <summary>How a <see cref="ClusterStateNode"/> runs.</summary>
public sealed record ClusterStateNodeOptions
{
    /// <summary>This member's stable id; must match its entry in <see cref="Peers"/>.</summary>
    public required string MemberId { get; init; }

    /// <summary>Where this member listens for Raft traffic; its identity in Raft, so keep it stable across restarts.</summary>
    public required IPEndPoint RaftEndPoint { get; init; }

    /// <summary>Where this member listens for proposals forwarded by followers.</summary>
    public required IPEndPoint ProposalEndPoint { get; init; }

    /// <summary>
    /// The initial voters, this member included, the same list on every voter. Used only on the very
    /// first start of a data directory to seed the Raft configuration; afterwards the persisted,
    /// committed configuration rules (so voters replaced later stay replaced).
    /// </summary>
    public required IReadOnlyList<ClusterPeer> Peers { get; init; }

    /// <summary>Directory of the WAL, snapshots, membership and identity files; one per member, never shared.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>
    /// False (default): a founding voter, seeded with <see cref="Peers"/>. True: a new member that
    /// waits, passive, until the leader adds it (<see cref="ClusterStateNode.AddVoterAsync"/>).
    /// </summary>
    public bool JoinExisting { get; init; }

    public TimeSpan LowerElectionTimeout { get; init; } = TimeSpan.FromMilliseconds(300);

    public TimeSpan UpperElectionTimeout { get; init; } = TimeSpan.FromMilliseconds(600);

    /// <summary>Timeout of one Raft request to a peer; defaults to the lower election timeout.</summary>
    public TimeSpan? RaftRequestTimeout { get; init; }

    /// <summary>How long a proposal waits for some leader to accept it before failing with NoQuorum.</summary>
    public TimeSpan NoQuorumTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Upper bound of a whole proposal, from call to applied result.</summary>
    public TimeSpan ProposeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Commands applied between two state snapshots (after which the WAL drops older entries).</summary>
    public int SnapshotInterval { get; init; } = 1000;

    /// <summary>Checks the options; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(MemberId))
        {
            throw new ArgumentException("MemberId is empty");
        }

        if (string.IsNullOrWhiteSpace(DataDirectory))
        {
            throw new ArgumentException("DataDirectory is empty");
        }

        if (LowerElectionTimeout <= TimeSpan.Zero || UpperElectionTimeout <= LowerElectionTimeout)
        {
            throw new ArgumentException("election timeouts must satisfy 0 < lower < upper");
        }

        if (SnapshotInterval < 1)
        {
            throw new ArgumentException("SnapshotInterval must be at least 1");
        }

        if (JoinExisting)
        {
            return;
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        var endPoints = new HashSet<IPEndPoint>();
        var self = false;
        foreach (var peer in Peers)
        {
            if (!ids.Add(peer.MemberId) || !endPoints.Add(peer.RaftEndPoint))
            {
                throw new ArgumentException($"peer {peer.MemberId} ({peer.RaftEndPoint}) is listed twice");
            }

            if (peer.MemberId == MemberId)
            {
                if (!peer.RaftEndPoint.Equals(RaftEndPoint))
                {
                    throw new ArgumentException($"peer list gives member {MemberId} Raft endpoint {peer.RaftEndPoint}, but it listens on {RaftEndPoint}");
                }

                self = true;
            }
        }

        if (!self)
        {
            throw new ArgumentException($"the peer list must contain this member ({MemberId}); every founding voter gets the same full list");
        }

        if (Peers.Count == 2)
        {
            throw new ArgumentException(
                "2 founding voters: two voters survive no failure and need both to run; use 1 (development) or 3-5, the same full list on every voter");
        }
    }
}
