using System.Globalization;
using Slab.Api.V1;

namespace Slab.Cli.Output;

/// <summary>The cluster, its nodes and its KVDB (Raft) members, for people.</summary>
internal static class ClusterViews
{
    private const string NoQuorum = "No quorum: cluster writes are refused until a majority of KVDB members is reachable";

    private const string Offline = "offline";

    private static readonly Column<KvdbMember>[] _memberColumns =
    [
        new("MEMBER", m => m.MemberId),
        new("NODE", m => Formats.OrDash(m.NodeId)),
        new("NAME", m => Formats.OrDash(m.NodeName)),
        new("LEADER", m => Formats.YesNo(m.IsLeader)),
        new("REACHABLE", m => Formats.YesNo(m.Reachable)),
    ];

    private static Column<ClusterNode>[] NodeColumns(DateTimeOffset now) =>
    [
        new("ID", n => n.Id),
        new("NAME", n => Formats.OrDash(n.Name)),
        new("ADDRESS", n => Formats.OrDash(Host(n.ApiEndpoint))),
        new("STATUS", n => NodeStatus(n.Status)),
        new("ZONE", n => Formats.OrDash(n.Zone)),
        new("RACK", n => Formats.OrDash(n.Rack)),
        new("KVDB", KvdbRole),
        new("CAPACITY", n => Sizes.Format(n.TotalBytes)),
        new("USED", n => Sizes.Format(n.UsedBytes)),
        new("REPLICAS", n => n.ReplicaCount.ToString(CultureInfo.InvariantCulture)),
        new("ATTACHED", n => n.AttachedCount.ToString(CultureInfo.InvariantCulture)),
        // The answering node hears no heartbeat from itself; this also marks which row is "here".
        new("LAST-SEEN", n => n.IsLocal ? "this node" : Formats.Age(n.LastSeenUnixMs, now)),
    ];

    /// <summary><c>cluster list</c>: who leads, how many nodes are up, then a row per node.</summary>
    public static void WriteList(ClusterInfo c, DateTimeOffset now, TextWriter o)
    {
        WarnNoQuorum(c.Clustered, c.HasQuorum, o);
        o.WriteLine($"Cluster ID: {c.ClusterId}");
        o.WriteLine($"Leader: {Leader(c.Clustered, c.HasQuorum, c.LeaderNodeName, c.LeaderNodeId)}");
        o.WriteLine($"Nodes: {NodeCount(c.Nodes)}");
        o.WriteLine();
        WriteNodes(c.Nodes, now, o, "");
    }

    /// <summary><c>cluster inspect</c> without a node: the summary, the KVDB members and the nodes.</summary>
    public static void WriteInspect(ClusterInfo c, DateTimeOffset now, TextWriter o)
    {
        WarnNoQuorum(c.Clustered, c.HasQuorum, o);
        var local = c.Nodes.FirstOrDefault(n => n.Id == c.LocalNodeId);
        new KeyValueBlock()
            .Add("Cluster ID", c.ClusterId)
            .Add("Mode", c.Clustered ? "cluster" : "single node")
            .Add("Leader", Leader(c.Clustered, c.HasQuorum, c.LeaderNodeName, c.LeaderNodeId))
            .Add("Quorum", Quorum(c.Clustered, c.HasQuorum))
            .Add("Revision", c.Revision.ToString(CultureInfo.InvariantCulture))
            .Add("Nodes", NodeCount(c.Nodes))
            .Add("Volumes", c.VolumeCount.ToString(CultureInfo.InvariantCulture))
            .Add("Total Capacity", Sizes.Format(c.TotalBytes))
            .Add("Total Used", Sizes.Format(c.UsedBytes))
            .Add("This node", local is null ? Formats.OrDash(c.LocalNodeId) : Formats.NodeWithId(local.Name, local.Id))
            .Write(o, "");
        WriteMemberSection(c.KvdbMembers, o, "", "\t");
        o.WriteLine($"Nodes: {c.Nodes.Count}");
        if (c.Nodes.Count > 0)
            WriteNodes(c.Nodes, now, o, "\t");
    }

    /// <summary><c>cluster inspect NODE</c>: everything the cluster knows about one node.</summary>
    public static void WriteNode(ClusterNode n, DateTimeOffset now, TextWriter o)
    {
        new KeyValueBlock()
            .Add("Node ID", n.Id)
            .Add("Name", Formats.OrDash(n.Name))
            .Add("Status", NodeStatus(n.Status))
            .Add("This node", Formats.YesNo(n.IsLocal))
            .Add("API endpoint", Formats.OrDash(n.ApiEndpoint))
            .Add("Data endpoint", Formats.OrDash(n.DataEndpoint))
            .Add("Raft endpoint", Formats.OrDash(n.RaftEndpoint))
            .Add("Gossip endpoint", Formats.OrDash(n.GossipEndpoint))
            .Add("Zone", Formats.OrDash(n.Zone))
            .Add("Rack", Formats.OrDash(n.Rack))
            .Add("Labels", Formats.Labels(n.Labels))
            .Add("KVDB member", KvdbRole(n))
            .Add("Capacity", Sizes.Format(n.TotalBytes))
            .Add("Used", Sizes.Format(n.UsedBytes))
            .Add("Provisioned", Sizes.Format(n.ProvisionedBytes))
            .Add("Replicas", n.ReplicaCount.ToString(CultureInfo.InvariantCulture))
            .Add("Attached volumes", n.AttachedCount.ToString(CultureInfo.InvariantCulture))
            .Add("Last seen", n.IsLocal ? "this node" : Formats.TimeAndAge(n.LastSeenUnixMs, now))
            .Add("Load (1 min)", Formats.Number(n.Load, "0.##"))
            .Add("Version", Formats.OrDash(n.Version))
            .Add("Registered", Formats.Time(n.RegisteredUnixMs))
            .Write(o, "");
        PoolViews.WriteTable(n.Pools, "Pools", o, "");
    }

    /// <summary>The KVDB members table (<c>service kvdb members</c>, and inside status and inspect).</summary>
    public static void WriteMembers(IEnumerable<KvdbMember> members, TextWriter o, string indent = "") =>
        Table.From(members, _memberColumns).Write(o, indent);

    /// <summary>"KVDB members: 3 (2 reachable)" and the table under it; "none" without members.</summary>
    public static void WriteMemberSection(IReadOnlyCollection<KvdbMember> members, TextWriter o, string titleIndent, string tableIndent)
    {
        if (members.Count == 0)
        {
            o.WriteLine($"{titleIndent}KVDB members: none");
            return;
        }
        o.WriteLine($"{titleIndent}KVDB members: {members.Count} ({members.Count(m => m.Reachable)} reachable)");
        WriteMembers(members, o, tableIndent);
    }

    /// <summary>Printed first wherever the answering node is clustered and sees no leader.</summary>
    public static void WarnNoQuorum(bool clustered, bool hasQuorum, TextWriter o)
    {
        if (clustered && !hasQuorum)
            o.WriteLine(NoQuorum);
    }

    /// <summary>"node-1 (n1)"; "- (single node)" outside a cluster; "none (no quorum)" while there is no leader.</summary>
    public static string Leader(bool clustered, bool hasQuorum, string name, string id)
    {
        if (!clustered)
            return "- (single node)";
        if (name.Length == 0 && id.Length == 0)
            return hasQuorum ? "none" : "none (no quorum)";
        return Formats.NodeWithId(name, id);
    }

    public static string Quorum(bool clustered, bool hasQuorum) =>
        !clustered ? "- (single node)" : hasQuorum ? "yes" : "NO (cluster writes are refused)";

    /// <summary>"2 online of 3".</summary>
    public static string NodeCount(uint online, uint total) => $"{online} online of {total}";

    public static string NodeCount(IReadOnlyCollection<ClusterNode> nodes) =>
        NodeCount((uint)nodes.Count(n => n.Status == "online"), (uint)nodes.Count);

    /// <summary>"yes (leader)", "yes" (a voter) or "no".</summary>
    public static string KvdbRole(ClusterNode n) => n.IsLeader ? "yes (leader)" : Formats.YesNo(n.Kvdb);

    /// <summary>Offline is upper case so it stands out in a column of "online".</summary>
    public static string NodeStatus(string status) =>
        status.Length == 0 ? "unknown" : status == Offline ? "OFFLINE" : status;

    /// <summary>The host of "host:port" or "[v6]:port"; anything else as it is.</summary>
    public static string Host(string endpoint)
    {
        if (endpoint.StartsWith('['))
        {
            var close = endpoint.IndexOf(']', StringComparison.Ordinal);
            return close > 0 ? endpoint[1..close] : endpoint;
        }
        var colon = endpoint.IndexOf(':', StringComparison.Ordinal);
        // More than one colon without brackets is a bare IPv6 address, not host:port.
        return colon > 0 && colon == endpoint.LastIndexOf(':') ? endpoint[..colon] : endpoint;
    }

    private static void WriteNodes(IReadOnlyCollection<ClusterNode> nodes, DateTimeOffset now, TextWriter o, string indent)
    {
        Table.From(nodes, NodeColumns(now)).Write(o, indent);
        foreach (var n in nodes.Where(n => n.Status == Offline))
            o.WriteLine($"{indent}Warning: node {Formats.NodeWithId(n.Name, n.Id)} is offline (last seen: {Formats.Age(n.LastSeenUnixMs, now)})");
    }

    public static void WriteOptions(ClusterOptions options, TextWriter o) => new KeyValueBlock()
        .Add("Replica move timeout", options.ReplMoveTimeoutSeconds == 0 ? "never (0)" : $"{(options.ReplMoveTimeoutSeconds / 60.0).ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)} minutes")
        .Add("Resync rate per node", options.ResyncRateBytesPerSecond == 0 ? "unlimited (0)" : $"{options.ResyncRateBytesPerSecond / 1_000_000} MB/s")
        .Write(o);
}
