using System.Globalization;
using Grpc.Core;
using Slab.Api.V1;
using Slab.Cli.Connection;
using Slab.Cli.Output;
using Slab.Cli.Parsing;
using IoLimitSyntax = Slab.Common.IoLimitSyntax;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl volume</c> (alias <c>v</c>): create, list, inspect, update, stats, ha-update, check, delete, clone, restore.</summary>
internal static class VolumeCommands
{
    private static readonly ArgSpec _name = new("NAME");

    private static FlagSpec SizeFlag(bool required) => new()
    {
        Name = "size",
        Short = 's',
        ValueName = "SIZE",
        Description = "volume size: " + SizeParser.HelpText,
        Required = required,
    };

    private static FlagSpec LabelFlag(string description) => new()
    {
        Name = "label",
        Short = 'l',
        ValueName = "k=v,...",
        Description = description,
        Repeatable = true,
    };

    private static FlagSpec[] QosFlags() =>
    [
        new() { Name = "max_iops", ValueName = "R,W", Description = "QoS: most operations per second, " + IoLimitSyntax.IopsHelp },
        new() { Name = "max_bandwidth", ValueName = "R,W", Description = "QoS: most MB/s, " + IoLimitSyntax.BandwidthHelp },
    ];

    public static CommandNode Build() =>
        new CommandNode("volume", "Manage volumes", "v").Add(
            new CommandNode("create", "Create a volume", "c")
            {
                Args = [_name],
                Flags =
                [
                    SizeFlag(required: true),
                    new() { Name = "repl", Short = 'r', ValueName = "N", Description = "number of replicas on distinct nodes, 1-3 (default 1)" },
                    new() { Name = "fs", ValueName = "FS", Description = "filesystem made on first mount: ext4, xfs or none (default ext4)", Choices = ["ext4", "xfs", "none"] },
                    new() { Name = "io_priority", ValueName = "PRIO", Description = "io priority of the pools to place replicas on: high, medium or low", Choices = ["high", "medium", "low"] },
                    LabelFlag("labels to set, e.g. app=db,tier=1"),
                    new()
                    {
                        Name = "nodes", ValueName = "NODE,...", Repeatable = true,
                        Description = "place replicas only on these nodes (ids, names or addresses)",
                    },
                    new() { Name = "zones", ValueName = "ZONE,...", Repeatable = true, Description = "place replicas only on nodes in these zones (spread across them)" },
                    new() { Name = "racks", ValueName = "RACK,...", Repeatable = true, Description = "place replicas only on nodes in these racks" },
                    .. QosFlags(),
                ],
                Handler = CreateAsync,
            },
            new CommandNode("list", "List volumes", "l")
            {
                Flags = [LabelFlag("only volumes carrying all of these labels")],
                Handler = ListAsync,
            },
            new CommandNode("inspect", "Show details of one or more volumes", "i")
            {
                Args = [new ArgSpec("NAME", Variadic: true)],
                Handler = InspectAsync,
            },
            new CommandNode("update", "Grow a volume, change its labels or its QoS limits")
            {
                Details = "Sizes only grow (online when attached). A label with an empty value (k=) is removed. " +
                    "QoS limits change online; a flag not given keeps its limits, 0 removes a limit.",
                Args = [_name],
                Flags = [SizeFlag(required: false), LabelFlag("labels to set; k= removes label k"), .. QosFlags()],
                Handler = UpdateAsync,
            },
            VolumeStatsCommand.Build(),
            new CommandNode("ha-update", "Raise or lower a volume's replica count online")
            {
                Details = "Raising places a new replica by policy (or on --node) and rebuilds it from an in-sync replica " +
                    "where the volume is attached; lowering removes --node's replica, else the least useful one. Cluster only.",
                Args = [_name],
                Flags =
                [
                    new() { Name = "repl", Short = 'r', ValueName = "N", Description = "the replica count wanted, 1-3", Required = true },
                    new() { Name = "node", Short = 'n', ValueName = "NODE", Description = "raising: the node for the new replica; lowering: the node whose replica goes" },
                    new() { Name = "wait", Description = "wait until every replica is in sync, showing the rebuild's progress" },
                ],
                Handler = HaUpdateAsync,
            },
            new CommandNode("check", "Compare a volume's in-sync replicas region by region")
            {
                Details = "Like pxctl verify-checksum. Runs where the volume is attached; exits 1 when a region differs.",
                Args = [_name],
                Handler = CheckAsync,
            },
            new CommandNode("delete", "Delete a volume (refused while attached)", "d")
            {
                Args = [_name],
                Handler = DeleteAsync,
            },
            VolumeSnapshotCommands.Build(),
            new CommandNode("clone", "Create a volume from a volume or a snapshot (VOL@SNAP)")
            {
                Args = [new ArgSpec("SOURCE")],
                Flags =
                [
                    new() { Name = "name", ValueName = "NAME", Description = "name of the new volume", Required = true },
                    LabelFlag("labels to set on the new volume"),
                ],
                Handler = CloneAsync,
            },
            new CommandNode("restore", "Restore a volume's data from one of its snapshots (refused while attached)")
            {
                Args = [_name],
                Flags = [new() { Name = "snapshot", Short = 's', ValueName = "SNAP", Description = "snapshot to restore from", Required = true }],
                Handler = RestoreAsync,
            });

    private static async Task<int> CreateAsync(CommandContext ctx)
    {
        var spec = new VolumeSpec { SizeBytes = SizeParser.Parse(ctx.Flag("size")!) };
        if (ctx.Flag("repl") is { } repl)
            spec.Repl = ParseRepl(repl);
        if (ctx.Flag("fs") is { } fs)
            spec.Fs = fs;
        if (ctx.Flag("io_priority") is { } priority)
            spec.IoPriority = ParsePriority(priority);
        spec.Labels.Add(LabelParser.Parse(ctx.Flags("label"), allowEmptyValues: false));
        spec.Nodes.Add(ctx.NameList("nodes"));
        spec.Zones.Add(ctx.NameList("zones"));
        spec.Racks.Add(ctx.NameList("racks"));
        if (IoLimitParser.Parse(ctx.Flag("max_iops"), ctx.Flag("max_bandwidth")) is { } limits)
            spec.Limits = limits;

        var volume = await ctx.Api.Volumes.CreateAsync(new CreateVolumeRequest { Name = ctx.Arg(0), Spec = spec }, ctx.Api.Options());
        return ctx.Print(volume, $"Volume successfully created: {volume.Id}");
    }

    private static async Task<int> ListAsync(CommandContext ctx)
    {
        var request = new EnumerateVolumesRequest();
        request.Labels.Add(LabelParser.Parse(ctx.Flags("label"), allowEmptyValues: false));
        var response = await ctx.Api.Volumes.EnumerateAsync(request, ctx.Api.Options());
        return ctx.PrintList(response.Volumes, o => VolumeViews.WriteList(response.Volumes, o));
    }

    private static async Task<int> InspectAsync(CommandContext ctx)
    {
        var found = new List<Volume>();
        var stats = new List<VolumeStats?>();
        var failed = false;
        foreach (var name in ctx.Args)
        {
            try
            {
                var volume = await ctx.Api.Volumes.InspectAsync(new InspectVolumeRequest { Volume = name }, ctx.Api.Options());
                found.Add(volume);
                stats.Add(ctx.Json ? null : await StatsOrNullAsync(ctx, volume.Id));
            }
            catch (RpcException ex) when (!ApiConnection.IsUnreachable(ex, out _) && ctx.Args.Count > 1)
            {
                // Report this one and go on with the others; the exit code still says it failed.
                await ctx.Error.WriteLineAsync(CliApp.Describe(ex, ctx.Api.Endpoint));
                failed = true;
            }
        }
        ctx.PrintList(found, o =>
        {
            for (var i = 0; i < found.Count; i++)
            {
                if (i > 0)
                    o.WriteLine();
                VolumeViews.WriteInspect(found[i], o, stats[i]);
            }
        });
        return failed ? CliApp.Failure : CliApp.Success;
    }

    /// <summary>The volume's I/O counters for inspect; null when they cannot be had (its node is offline): inspect shows the rest.</summary>
    private static async Task<VolumeStats?> StatsOrNullAsync(CommandContext ctx, string volumeId)
    {
        try
        {
            return await ctx.Api.Volumes.StatsAsync(new VolumeStatsRequest { Volume = volumeId }, ctx.Api.Options());
        }
        catch (RpcException ex) when (!ApiConnection.IsUnreachable(ex, out _))
        {
            return null;
        }
    }

    private static async Task<int> UpdateAsync(CommandContext ctx)
    {
        var request = new UpdateVolumeRequest { Volume = ctx.Arg(0) };
        if (ctx.Flag("size") is { } size)
            request.SizeBytes = SizeParser.Parse(size);
        request.Labels.Add(LabelParser.Parse(ctx.Flags("label"), allowEmptyValues: true));
        request.Limits = IoLimitParser.Parse(ctx.Flag("max_iops"), ctx.Flag("max_bandwidth"));
        if (!request.HasSizeBytes && request.Labels.Count == 0 && request.Limits is null)
            throw new UsageException("nothing to update: give --size, --label, --max_iops and/or --max_bandwidth");

        var volume = await ctx.Api.Volumes.UpdateAsync(request, ctx.Api.Options());
        return ctx.Print(volume, $"Update Volume: Volume update successful for volume {ctx.Arg(0)}");
    }

    private static async Task<int> HaUpdateAsync(CommandContext ctx)
    {
        var request = new HaUpdateVolumeRequest { Volume = ctx.Arg(0), Repl = ParseRepl(ctx.Flag("repl")!), Node = ctx.OptionalName("node") ?? "" };
        var volume = await ctx.Api.Volumes.HaUpdateAsync(request, ctx.Api.Options());
        if (!ctx.Parse.IsSet("wait") || ctx.Json)
            return ctx.Print(volume, $"Update Volume Replication: Replication update started successfully for volume {volume.Name}");

        await ctx.Out.WriteLineAsync($"Update Volume Replication: Replication update started successfully for volume {volume.Name}");
        var progress = new ProgressLine(ctx.Out);
        while (true)
        {
            var copying = volume.Replicas.Where(r => r.State != "in-sync").ToList();
            if (copying.Count == 0)
            {
                progress.Done($"Every replica of {volume.Name} is in sync (epoch {volume.Epoch}).");
                return CliApp.Success;
            }

            progress.Show(copying[0].NodeName, copying[0].State, copying[0].Progress);
            await Task.Delay(TimeSpan.FromSeconds(1));
            volume = await ctx.Api.Volumes.InspectAsync(new InspectVolumeRequest { Volume = volume.Id }, ctx.Api.Options());
        }
    }

    private static async Task<int> CheckAsync(CommandContext ctx)
    {
        // A check reads every allocated block of every in-sync replica: wait as long as it takes (Ctrl-C stops it).
        var report = await ctx.Api.Volumes.CheckAsync(new CheckVolumeRequest { Volume = ctx.Arg(0) }, ctx.Api.Options(TimeSpan.FromHours(12)));
        ctx.Print(report, VolumeViews.CheckSummary(ctx.Arg(0), report));
        return report.DifferingRegions == 0 ? CliApp.Success : CliApp.Failure;
    }

    private static async Task<int> DeleteAsync(CommandContext ctx)
    {
        var response = await ctx.Api.Volumes.DeleteAsync(new DeleteVolumeRequest { Volume = ctx.Arg(0) }, ctx.Api.Options());
        return ctx.Print(response, $"Volume {ctx.Arg(0)} successfully deleted.");
    }

    private static async Task<int> CloneAsync(CommandContext ctx)
    {
        var request = new CloneVolumeRequest { Source = ctx.Arg(0), Name = ctx.RequireName("name") };
        request.Labels.Add(LabelParser.Parse(ctx.Flags("label"), allowEmptyValues: false));
        var volume = await ctx.Api.Volumes.CloneAsync(request, ctx.Api.Options());
        return ctx.Print(volume, $"Volume clone successful: {volume.Id}");
    }

    private static async Task<int> RestoreAsync(CommandContext ctx)
    {
        var request = new RestoreSnapshotRequest { Volume = ctx.Arg(0), Snapshot = ctx.RequireName("snapshot") };
        var volume = await ctx.Api.Snapshots.RestoreAsync(request, ctx.Api.Options());
        return ctx.Print(volume, $"Volume {request.Volume} restored from snapshot {request.Snapshot}");
    }

    private static uint ParseRepl(string text)
    {
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var repl) || repl is < 1 or > 3)
            throw new UsageException($"invalid value \"{text}\" for --repl: must be 1, 2 or 3");
        return repl;
    }

    private static IoPriority ParsePriority(string text) => text switch
    {
        "high" => IoPriority.High,
        "medium" => IoPriority.Medium,
        "low" => IoPriority.Low,
        _ => throw new UsageException($"invalid value \"{text}\" for --io_priority: must be one of high, medium, low"),
    };
}
