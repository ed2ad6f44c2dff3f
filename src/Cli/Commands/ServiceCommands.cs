using Slab.Api.V1;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl service pool show</c>.</summary>
internal static class ServiceCommands
{
    public static CommandNode Build() =>
        new CommandNode("service", "Service and maintenance commands for this node").Add(
            new CommandNode("pool", "Storage pools of this node").Add(
                new CommandNode("show", "Show this node's storage pools and their drives")
                {
                    Handler = ShowPoolsAsync,
                }));

    private static async Task<int> ShowPoolsAsync(CommandContext ctx)
    {
        var response = await ctx.Api.Node.PoolsAsync(new PoolsRequest(), ctx.Api.Options());
        if (ctx.Json)
            Json.WriteArray(ctx.Out, response.Pools);
        else
            Write(response.Pools, ctx.Out);
        return CliApp.Success;
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
