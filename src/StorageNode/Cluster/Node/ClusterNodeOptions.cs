using System.Collections.Immutable;
using System.Globalization;
using System.Net;

namespace Slab.Cluster.Node;

/// <summary>How this slabd takes part in its cluster. Immutable; built from slabd's command line.</summary>
public sealed record ClusterNodeOptions
{
    public required string ClusterId { get; init; }

    /// <summary>This node's id (DATA/node.json); never changes.</summary>
    public required string NodeId { get; init; }

    public required string NodeName { get; init; }

    /// <summary>The address other nodes reach this node on; every cluster listener binds it.</summary>
    public required IPAddress Advertise { get; init; }

    public int ApiPort { get; init; } = 9501;

    public int ReplicationPort { get; init; } = 9503;

    public int RaftPort { get; init; } = 9504;

    /// <summary>Gossip UDP port; the proposal-forwarding channel listens on TCP with the same number.</summary>
    public int GossipPort { get; init; } = 9505;

    /// <summary>This node is a Raft voter.</summary>
    public bool Kvdb { get; init; }

    /// <summary>Raft endpoints of the KVDB voters (founding voters, or where a joining node finds them).</summary>
    public required IReadOnlyList<IPEndPoint> Peers { get; init; }

    public string Zone { get; init; } = "";

    public string Rack { get; init; } = "";

    public ImmutableSortedDictionary<string, string> Labels { get; init; } = ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal);

    /// <summary>Root of this node's cluster files (Raft WAL and snapshots under <c>raft/</c>).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Provisioned bytes may reach capacity x this on any node (used by the leader's placement).</summary>
    public double OvercommitRatio { get; init; } = 4.0;

    /// <summary>Pools take no new replica once this share of them is used.</summary>
    public double FullFraction { get; init; } = 0.95;

    public IPEndPoint ApiEndPoint => new(Advertise, ApiPort);

    public IPEndPoint ReplicationEndPoint => new(Advertise, ReplicationPort);

    public IPEndPoint RaftEndPoint => new(Advertise, RaftPort);

    public IPEndPoint GossipEndPoint => new(Advertise, GossipPort);

    /// <summary>The forwarding channel of a voter, by convention on the TCP port after its Raft port.</summary>
    public static IPEndPoint ProposalEndPointOf(IPEndPoint raft) => new(raft.Address, raft.Port + 1);

    /// <summary>A voter's gossip endpoint, by convention on the UDP port after its Raft port.</summary>
    public static IPEndPoint GossipEndPointOf(IPEndPoint raft) => new(raft.Address, raft.Port + 1);
}

/// <summary>
/// A node's endpoints as the cluster state records them in <see cref="State.NodeInfo.Addresses"/>:
/// "ip:port" strings in a fixed order — API, replication, Raft, gossip — so <c>--nodes</c> can
/// match any of them (and the bare IP).
/// </summary>
public sealed record NodeEndpoints(string Api, string Replication, string Raft, string Gossip)
{
    public ImmutableArray<string> ToAddresses() => [Api, Replication, Raft, Gossip];

    public static NodeEndpoints Of(ClusterNodeOptions options) => new(
        options.ApiEndPoint.ToString(),
        options.ReplicationEndPoint.ToString(),
        options.RaftEndPoint.ToString(),
        options.GossipEndPoint.ToString());

    /// <summary>Reads the recorded addresses; missing entries are empty.</summary>
    public static NodeEndpoints From(ImmutableArray<string> addresses)
    {
        string At(int i) => addresses.IsDefault || addresses.Length <= i ? "" : addresses[i];
        return new NodeEndpoints(At(0), At(1), At(2), At(3));
    }

    /// <summary>The node whose Raft endpoint is the leader's member id; null when none.</summary>
    public static State.NodeInfo? LeaderOf(State.ClusterState state, string? leaderMemberId)
        => leaderMemberId is null ? null : state.Nodes.Values.FirstOrDefault(n => From(n.Addresses).Raft == leaderMemberId);

    /// <summary>Parses one recorded endpoint; null when missing or malformed.</summary>
    public static IPEndPoint? Parse(string endPoint) => IPEndPoint.TryParse(endPoint, out var parsed) && parsed.Port > 0 ? parsed : null;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"api {Api}, data {Replication}, raft {Raft}, gossip {Gossip}");
}
