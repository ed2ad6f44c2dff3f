using Slab.Api.V1;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl status</c>: this node, its pools, the cluster and alerts, like pxctl status.</summary>
internal static class StatusCommand
{
    private static readonly Column<Alert>[] _alertColumns =
    [
        new("SEVERITY", a => a.Severity.ToUpperInvariant()),
        new("RESOURCE", a => a.Resource),
        new("RAISED", a => Formats.Time(a.RaisedUnixMs)),
        new("MESSAGE", a => a.Message),
    ];

    public static CommandNode Build() => new("status", "Show the status of this node and the cluster")
    {
        Handler = RunAsync,
    };

    // One call: StatusResponse carries the cluster summary (leader, node counts, KVDB members).
    private static async Task<int> RunAsync(CommandContext ctx)
    {
        var status = await ctx.Api.Node.StatusAsync(new StatusRequest(), ctx.Api.Options());
        return ctx.Print(status, o => Write(status, o));
    }

    internal static void Write(StatusResponse s, TextWriter o)
    {
        o.WriteLine(s.Status == "online"
            ? "Status: Slab is operational"
            : $"Status: Slab is not operational (status: {(s.Status.Length == 0 ? "unknown" : s.Status)})");
        ClusterViews.WarnNoQuorum(s.Clustered, s.HasQuorum, o);
        if (s.Version.Length > 0)
            o.WriteLine($"Version: {s.Version}");
        o.WriteLine($"Node ID: {s.NodeId}");
        o.WriteLine($"Node name: {s.NodeName}");
        PoolViews.WriteTable(s.Pools, "Local Storage Pools", o, "\t");
        if (!s.Clustered)
            o.WriteLine($"\tVolumes: {s.VolumeCount} ({s.AttachedCount} attached)");
        if (s.NbdSocket.Length > 0 || s.NbdTcp.Length > 0)
            o.WriteLine($"\tNBD: {string.Join(", ", new[] { s.NbdSocket, s.NbdTcp }.Where(x => x.Length > 0))}");
        o.WriteLine("Cluster Summary");
        o.WriteLine($"\tCluster ID: {s.ClusterId}");
        o.WriteLine($"\tNodes: {ClusterViews.NodeCount(s.NodesOnline, s.NodesTotal)}");
        // Clustered, the counts are the cluster's volumes (and those attached on any node).
        if (s.Clustered)
            o.WriteLine($"\tVolumes: {s.VolumeCount} ({s.AttachedCount} attached)");
        var global = new KeyValueBlock();
        if (s.Clustered)
        {
            o.WriteLine($"\tLeader: {ClusterViews.Leader(s.Clustered, s.HasQuorum, s.LeaderNodeName, s.LeaderNodeId)}");
            o.WriteLine($"\tQuorum: {ClusterViews.Quorum(s.Clustered, s.HasQuorum)}");
            ClusterViews.WriteMemberSection(s.KvdbMembers, o, "\t", "\t");
            // The API sums capacity and use over the online nodes; provisioning is only known per node.
            global.Add("Total Used", Sizes.Format(s.ClusterUsedBytes)).Add("Total Capacity", Sizes.Format(s.ClusterTotalBytes));
        }
        else
        {
            global.Add("Total Used", Sizes.Format(s.UsedBytes)).Add("Total Capacity", Sizes.Format(s.TotalBytes))
                .Add("Total Provisioned", Sizes.Format(s.ProvisionedBytes));
        }
        o.WriteLine("Global Storage Pool");
        global.Write(o);
        WriteAlerts(s.Alerts, o);
    }

    private static void WriteAlerts(IReadOnlyCollection<Alert> alerts, TextWriter o)
    {
        if (alerts.Count == 0)
        {
            o.WriteLine("Alerts: none");
            return;
        }
        o.WriteLine($"Alerts: {alerts.Count}");
        Table.From(alerts, _alertColumns).Write(o, "\t");
    }
}
