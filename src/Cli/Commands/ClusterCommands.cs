using Slab.Api.V1;
using Slab.Cli.Connection;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl cluster list|inspect|delete</c>: the nodes of the cluster, as pxctl's cluster commands.</summary>
internal static class ClusterCommands
{
    private static readonly ArgSpec _node = new("NODE");

    public static CommandNode Build() =>
        new CommandNode("cluster", "Show the cluster and its nodes, remove nodes").Add(
            new CommandNode("list", "List the nodes of the cluster", "l", "ls")
            {
                Details = "With --json: a JSON array of the nodes (cluster inspect --json has the whole cluster).",
                Handler = ListAsync,
            },
            new CommandNode("inspect", "Show the cluster, or one node in detail", "i")
            {
                Details = "NODE is a node id, name or address. Without NODE: the cluster summary, KVDB members and nodes.",
                Args = [_node with { Required = false }],
                Handler = InspectAsync,
            },
            new CommandNode("delete", "Remove a node from the cluster (decommission)", "decommission")
            {
                Details = "A node holding replicas is marked decommissioning: its replicas are rebuilt on other nodes, then it leaves. " +
                    "Refused while it has volumes attached, or when it is offline holding a volume's only in-sync copy.",
                Args = [_node],
                Handler = DeleteAsync,
            },
            new CommandNode("options", "Show or change cluster options").Add(
                new CommandNode("list", "Show the cluster options", "l", "ls") { Handler = OptionsListAsync },
                new CommandNode("update", "Change cluster options")
                {
                    Flags =
                    [
                        new() { Name = "repl-move-timeout", ValueName = "MINUTES", Description = "minutes (decimals allowed) a node may be offline or in maintenance before its replicas move to other nodes; 0 never moves them" },
                        new() { Name = "resync-rate", ValueName = "MBPS", Description = "MB/s each node copies at most for resyncs and rebuilds; 0 is unlimited" },
                    ],
                    Handler = OptionsUpdateAsync,
                }));

    private static async Task<int> OptionsListAsync(CommandContext ctx)
    {
        var options = await ctx.Api.Cluster.GetOptionsAsync(new GetClusterOptionsRequest(), ctx.Api.Options());
        return ctx.Print(options, o => ClusterViews.WriteOptions(options, o));
    }

    private static async Task<int> OptionsUpdateAsync(CommandContext ctx)
    {
        var request = new UpdateClusterOptionsRequest();
        if (ctx.Flag("repl-move-timeout") is { } minutes)
            request.ReplMoveTimeoutSeconds = ParseMinutes(minutes);
        if (ctx.Flag("resync-rate") is { } rate)
            request.ResyncRateBytesPerSecond = (ulong)ParseCount(rate, "--resync-rate") * 1_000_000;
        if (!request.HasReplMoveTimeoutSeconds && !request.HasResyncRateBytesPerSecond)
            throw new UsageException("nothing to update: give --repl-move-timeout and/or --resync-rate");
        var options = await ctx.Api.Cluster.UpdateOptionsAsync(request, ctx.Api.Options());
        return ctx.Print(options, o =>
        {
            o.WriteLine("Successfully updated cluster-wide options");
            ClusterViews.WriteOptions(options, o);
        });
    }

    private static uint ParseMinutes(string text)
        => double.TryParse(text, System.Globalization.NumberStyles.AllowDecimalPoint, System.Globalization.CultureInfo.InvariantCulture, out var minutes) && minutes <= 525_600
            ? (uint)Math.Round(minutes * 60)
            : throw new UsageException($"invalid value \"{text}\" for --repl-move-timeout: give minutes from 0 to 525600 (decimals allowed, e.g. 0.5)");

    private static uint ParseCount(string text, string flag)
        => uint.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value) && value <= 1_000_000
            ? value
            : throw new UsageException($"invalid value \"{text}\" for {flag}: give a whole number from 0 to 1000000");

    // One call: ClusterInfo carries the leader and node counts for the header as well as the nodes.
    private static async Task<int> ListAsync(CommandContext ctx)
    {
        var cluster = await ctx.Api.Cluster.InspectAsync(new ClusterInspectRequest(), ctx.Api.Options());
        return ctx.PrintList(cluster.Nodes, o => ClusterViews.WriteList(cluster, DateTimeOffset.UtcNow, o));
    }

    private static async Task<int> InspectAsync(CommandContext ctx)
    {
        if (ctx.Args.Count == 0)
        {
            var cluster = await ctx.Api.Cluster.InspectAsync(new ClusterInspectRequest(), ctx.Api.Options());
            return ctx.Print(cluster, o => ClusterViews.WriteInspect(cluster, DateTimeOffset.UtcNow, o));
        }
        var node = await ctx.Api.Cluster.InspectNodeAsync(new InspectNodeRequest { Node = ctx.Arg(0) }, ctx.Api.Options());
        return ctx.Print(node, o => ClusterViews.WriteNode(node, DateTimeOffset.UtcNow, o));
    }

    private static async Task<int> DeleteAsync(CommandContext ctx)
    {
        // Like the KVDB membership changes, removal waits for the cluster to commit it.
        var response = await ctx.Api.Cluster.DecommissionAsync(new DecommissionRequest { Node = ctx.Arg(0) }, ctx.Api.Options(ApiConnection.LongDeadline));
        return ctx.Print(response, response.Removed
            ? $"Node {ctx.Arg(0)} successfully removed from the cluster."
            : $"Node {ctx.Arg(0)} is decommissioning: its {response.ReplicasMoving} replica(s) are rebuilt on other nodes, then it leaves the cluster (watch with slabctl cluster list).");
    }
}
