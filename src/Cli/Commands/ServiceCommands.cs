using Slab.Api.V1;
using Slab.Cli.Connection;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl service pool show|kvdb|maintenance</c>.</summary>
internal static class ServiceCommands
{
    public static CommandNode Build() =>
        new CommandNode("service", "Service and maintenance commands for this node").Add(
            new CommandNode("pool", "Storage pools of this node").Add(
                new CommandNode("show", "Show this node's storage pools and their drives")
                {
                    Handler = ShowPoolsAsync,
                }),
            new CommandNode("kvdb", "The cluster's internal KVDB (its Raft voters)").Add(
                new CommandNode("members", "List the KVDB members, the leader and which are reachable")
                {
                    Handler = KvdbMembersAsync,
                },
                new CommandNode("add-member", "Make a node a KVDB member (it must run with --kvdb)")
                {
                    Details = "Waits until the cluster has committed the change, then prints the members.",
                    Flags = [NodeFlag("node id, name or address of the node to add", required: true)],
                    Handler = KvdbAddAsync,
                },
                new CommandNode("remove-member", "Remove a KVDB member, e.g. a dead one, so a replacement can be added")
                {
                    Details = "Waits until the cluster has committed the change, then prints the members.",
                    Flags = [NodeFlag("member id (Raft endpoint host:port), node id or node name of the member to remove", required: true)],
                    Handler = KvdbRemoveAsync,
                }),
            new CommandNode("maintenance", "Enter or exit maintenance mode: no new replicas or attachments on the node meanwhile")
            {
                Flags =
                [
                    new() { Name = "enter", Description = "enter maintenance mode" },
                    new() { Name = "exit", Description = "exit maintenance mode" },
                    NodeFlag("node id, name or address (default: this node)", required: false),
                ],
                ExactlyOneOf = ["enter", "exit"],
                Handler = MaintenanceAsync,
            });

    private static FlagSpec NodeFlag(string description, bool required) => new()
    {
        Name = "node",
        ValueName = "NODE",
        Description = description,
        Required = required,
    };

    private static async Task<int> ShowPoolsAsync(CommandContext ctx)
    {
        var response = await ctx.Api.Node.PoolsAsync(new PoolsRequest(), ctx.Api.Options());
        return ctx.PrintList(response.Pools, o => Write(response.Pools, o));
    }

    private static async Task<int> KvdbMembersAsync(CommandContext ctx)
    {
        var response = await ctx.Api.Cluster.KvdbMembersAsync(new KvdbMembersRequest(), ctx.Api.Options());
        return PrintMembers(ctx, response, null);
    }

    // Membership changes wait for the cluster to commit them (and a new voter to catch up).
    private static async Task<int> KvdbAddAsync(CommandContext ctx)
    {
        var request = new AddKvdbMemberRequest { Node = ctx.RequireName("node") };
        var response = await ctx.Api.Cluster.AddKvdbMemberAsync(request, ctx.Api.Options(ApiConnection.LongDeadline));
        return PrintMembers(ctx, response, $"Node {request.Node} added to the KVDB members.");
    }

    private static async Task<int> KvdbRemoveAsync(CommandContext ctx)
    {
        var request = new RemoveKvdbMemberRequest { Member = ctx.RequireName("node") };
        var response = await ctx.Api.Cluster.RemoveKvdbMemberAsync(request, ctx.Api.Options(ApiConnection.LongDeadline));
        return PrintMembers(ctx, response, $"Member {request.Member} removed from the KVDB members.");
    }

    private static int PrintMembers(CommandContext ctx, KvdbMembersResponse response, string? done) =>
        ctx.PrintList(response.Members, o =>
        {
            if (done is not null)
                o.WriteLine(done);
            ClusterViews.WriteMembers(response.Members, o);
        });

    private static async Task<int> MaintenanceAsync(CommandContext ctx)
    {
        var request = new SetMaintenanceRequest { Node = ctx.OptionalName("node") ?? "", Enter = ctx.Parse.IsSet("enter") };
        var node = await ctx.Api.Cluster.SetMaintenanceAsync(request, ctx.Api.Options());
        var done = request.Enter ? "entered" : "exited";
        return ctx.Print(node, $"Node {Formats.NodeWithId(node.Name, node.Id)} {done} maintenance mode (status: {ClusterViews.NodeStatus(node.Status)}).");
    }

    internal static void Write(IReadOnlyList<Pool> pools, TextWriter o)
    {
        if (pools.Count == 0)
        {
            o.WriteLine("No storage pools.");
            return;
        }
        o.WriteLine("Slab drive configuration:");
        foreach (var p in pools)
        {
            o.WriteLine($"Pool ID: {p.Id}");
            var ratio = p.OvercommitRatio > 0 ? $" (may reach {Sizes.Format((ulong)(p.TotalBytes * p.OvercommitRatio))}, overcommit {Formats.Number(p.OvercommitRatio, "0.##")}x)" : "";
            var block = new KeyValueBlock()
                .Add("IO Priority", Formats.IoPriority(p.IoPriority))
                .Add("Capacity", Sizes.Format(p.TotalBytes))
                .Add("Used", Sizes.Format(p.UsedBytes))
                .Add("Provisioned", Sizes.Format(p.ProvisionedBytes) + ratio)
                .Add("Measured IOPS", p.MeasuredIops > 0 ? $"{Formats.Number(p.MeasuredIops, "0")} (4 KiB random write)" : "-")
                .Add("Measured MB/s", p.MeasuredMbps > 0 ? $"{Formats.Number(p.MeasuredMbps)} (1 MiB sequential write)" : "-")
                .Raw($"Drives: {p.Drives.Count}");
            var n = 0;
            foreach (var d in p.Drives)
            {
                n++;
                var status = d.Status.Length == 0 ? "unknown" : d.Status;
                var mounted = d.MountPath.Length > 0 ? $" (mounted at {d.MountPath})" : "";
                block.Raw($"{n}: {d.Path}, {Sizes.Format(d.UsedBytes)} used of {Sizes.Format(d.TotalBytes)}, {status}{mounted}");
            }
            block.Write(o);
        }
    }
}
