using System.Net;

namespace Slab.Cluster.Membership;

// Liveness: every node gossips a heartbeat counter and its pool stats over UDP (the gossip port of
// design.md's table). A node is alive while its heartbeat keeps rising; silence for
// GossipOptions.OfflineAfter makes it offline. The Raft state says which nodes exist; gossip only
// says which of them are up and how full they are. Wire format: GossipCodec.

/// <summary>Live numbers a node publishes about itself with every heartbeat.</summary>
/// <remarks>Bytes are pool bytes; <see cref="Load"/> is the 1-minute load average of the host.</remarks>
public readonly record struct NodeStats
{
    /// <summary>Usable bytes of the node's pool.</summary>
    public long TotalBytes { get; init; }

    /// <summary>Bytes of the pool holding data.</summary>
    public long UsedBytes { get; init; }

    /// <summary>Sum of the sizes of the volumes (thin provisioned) in the pool.</summary>
    public long ProvisionedBytes { get; init; }

    /// <summary>1-minute load average of the host.</summary>
    public double Load { get; init; }

    /// <summary>Replicas stored on the node.</summary>
    public int VolumeCount { get; init; }

    /// <summary>Volumes attached (exported to a block device) on the node.</summary>
    public int AttachedCount { get; init; }
}

/// <summary>One node as this node's gossip sees it; an immutable snapshot.</summary>
/// <param name="NodeId">The node's id (as registered in the cluster state).</param>
/// <param name="GossipEndPoint">Where the node listens for gossip.</param>
/// <param name="IsAlive">True while its heartbeat rose within <see cref="GossipOptions.OfflineAfter"/> (always true for the local node).</param>
/// <param name="Heartbeat">The highest heartbeat counter heard in the node's current incarnation.</param>
/// <param name="LastHeard">When that heartbeat was first heard here (wall clock of this node); for the local node, now.</param>
/// <param name="Stats">The stats the node published with that heartbeat.</param>
/// <param name="IsLocal">True for this node itself.</param>
public sealed record MemberView(string NodeId, IPEndPoint GossipEndPoint, bool IsAlive, long Heartbeat, DateTimeOffset LastHeard, NodeStats Stats, bool IsLocal);

/// <summary>The liveness view of the cluster's nodes.</summary>
/// <remarks>Threading: every member is thread-safe; events are raised on gossip's own threads and handlers must be quick.</remarks>
public interface IClusterMembership
{
    /// <summary>Every node heard of (including this one and nodes currently offline but not yet forgotten).</summary>
    IReadOnlyList<MemberView> Members { get; }

    /// <summary>The member with this node id; null when never heard of (or forgotten).</summary>
    MemberView? Find(string nodeId);

    /// <summary>True for this node and for nodes whose heartbeat rose within <see cref="GossipOptions.OfflineAfter"/>.</summary>
    bool IsAlive(string nodeId);

    /// <summary>Raised when a node is first heard of, comes back, or goes offline; the argument is its new view.</summary>
    event EventHandler<MemberView>? MemberChanged;
}
