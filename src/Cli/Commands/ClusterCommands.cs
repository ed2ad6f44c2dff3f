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
                Details = "Refused while the node holds the only copy of a volume or has volumes attached.",
                Args = [_node],
                Handler = DeleteAsync,
            });

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
        return ctx.Print(response, $"Node {ctx.Arg(0)} successfully removed from the cluster.");
    }
}
