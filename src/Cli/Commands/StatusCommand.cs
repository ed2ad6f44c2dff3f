using Slab.Api.V1;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl status</c>: this node, its pools, the cluster and alerts, like pxctl status.</summary>
internal static class StatusCommand
{
    public static CommandNode Build() => new("status", "Show the status of this node and the cluster")
    {
        Handler = RunAsync,
    };

    private static async Task<int> RunAsync(CommandContext ctx)
    {
        var status = await ctx.Api.Node.StatusAsync(new StatusRequest(), ctx.Api.Options());
        if (ctx.Json)
            Json.Write(ctx.Out, status);
        else
            Write(status, ctx.Out);
        return CliApp.Success;
    }

    internal static void Write(StatusResponse s, TextWriter o)
    {
        o.WriteLine(s.Status == "online"
            ? "Status: Slab is operational"
            : $"Status: Slab is not operational (status: {(s.Status.Length == 0 ? "unknown" : s.Status)})");
        if (s.Version.Length > 0)
            o.WriteLine($"Version: {s.Version}");
        o.WriteLine($"Node ID: {s.NodeId}");
        o.WriteLine($"Node name: {s.NodeName}");
        o.WriteLine($"\tLocal Storage Pools: {s.Pools.Count} pool{(s.Pools.Count == 1 ? "" : "s")}");
        if (s.Pools.Count > 0)
        {
            var table = new Table("POOL", "IO_PRIORITY", "CAPACITY", "USED", "PROVISIONED", "DRIVES");
            foreach (var p in s.Pools)
            {
                table.AddRow(p.Id, Formats.IoPriority(p.IoPriority), Sizes.Format(p.TotalBytes), Sizes.Format(p.UsedBytes),
                    Sizes.Format(p.ProvisionedBytes), p.Drives.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            table.Write(o, "\t");
        }
        o.WriteLine($"\tVolumes: {s.VolumeCount} ({s.AttachedCount} attached)");
        if (s.NbdSocket.Length > 0 || s.NbdTcp.Length > 0)
            o.WriteLine($"\tNBD: {string.Join(", ", new[] { s.NbdSocket, s.NbdTcp }.Where(x => x.Length > 0))}");
        o.WriteLine("Cluster Summary");
        o.WriteLine($"\tCluster ID: {s.ClusterId}");
        o.WriteLine($"\tNodes: {s.NodesOnline} online of {s.NodesTotal}");
        o.WriteLine("Global Storage Pool");
        new KeyValueBlock()
            .Add("Total Used", Sizes.Format(s.UsedBytes))
            .Add("Total Capacity", Sizes.Format(s.TotalBytes))
            .Add("Total Provisioned", Sizes.Format(s.ProvisionedBytes))
            .Write(o);
        if (s.Alerts.Count == 0)
        {
            o.WriteLine("Alerts: none");
            return;
        }
        o.WriteLine($"Alerts: {s.Alerts.Count}");
        var alerts = new Table("SEVERITY", "RESOURCE", "RAISED", "MESSAGE");
        foreach (var a in s.Alerts)
            alerts.AddRow(a.Severity.ToUpperInvariant(), a.Resource, Formats.Time(a.RaisedUnixMs), a.Message);
        alerts.Write(o, "\t");
    }
}
