using Slab.Api.V1;
using Slab.Cli.Connection;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl volume snapshot</c> (alias <c>snap</c>): create, group, list, delete.</summary>
internal static class VolumeSnapshotCommands
{
    private static readonly ArgSpec _volume = new("VOLUME");

    private static FlagSpec NameFlag(string description) => new()
    {
        Name = "name",
        ValueName = "SNAP",
        Description = description,
        Required = true,
    };

    public static CommandNode Build() =>
        new CommandNode("snapshot", "Create, list and delete snapshots of a volume", "snap").Add(
            new CommandNode("create", "Take a crash-consistent snapshot of a volume", "c")
            {
                Args = [_volume],
                Flags = [NameFlag("name of the snapshot")],
                Handler = CreateAsync,
            },
            new CommandNode("group", "Snapshot several volumes at one write boundary (each gets a snapshot of this name)", "g")
            {
                Flags =
                [
                    NameFlag("name of every member snapshot"),
                    new() { Name = "volume_ids", ValueName = "VOL,...", Repeatable = true, Required = true, Description = "the volumes (names or ids) to snapshot together" },
                ],
                Handler = GroupAsync,
            },
            new CommandNode("list", "List the snapshots of a volume", "l")
            {
                Args = [_volume],
                Handler = ListAsync,
            },
            new CommandNode("delete", "Delete a snapshot of a volume", "d")
            {
                Args = [_volume],
                Flags = [NameFlag("snapshot to delete")],
                Handler = DeleteAsync,
            });

    private static async Task<int> CreateAsync(CommandContext ctx)
    {
        var request = new CreateSnapshotRequest { Volume = ctx.Arg(0), Name = ctx.RequireName("name") };
        var snapshot = await ctx.Api.Snapshots.CreateAsync(request, ctx.Api.Options());
        return ctx.Print(snapshot, $"Volume snap successful: {snapshot.Id}");
    }

    private static async Task<int> GroupAsync(CommandContext ctx)
    {
        var request = new CreateGroupSnapshotRequest { Name = ctx.RequireName("name") };
        request.Volumes.Add(ctx.NameList("volume_ids"));
        var response = await ctx.Api.Snapshots.CreateGroupAsync(request, ctx.Api.Options(ApiConnection.LongDeadline));
        return ctx.PrintList(response.Snapshots, o => VolumeViews.WriteSnapshots(response.Snapshots, o));
    }

    private static async Task<int> ListAsync(CommandContext ctx)
    {
        var response = await ctx.Api.Snapshots.EnumerateAsync(new EnumerateSnapshotsRequest { Volume = ctx.Arg(0) }, ctx.Api.Options());
        return ctx.PrintList(response.Snapshots, o => VolumeViews.WriteSnapshots(response.Snapshots, o));
    }

    private static async Task<int> DeleteAsync(CommandContext ctx)
    {
        var request = new DeleteSnapshotRequest { Volume = ctx.Arg(0), Snapshot = ctx.RequireName("name") };
        var response = await ctx.Api.Snapshots.DeleteAsync(request, ctx.Api.Options());
        return ctx.Print(response, $"Snapshot {request.Snapshot} of volume {request.Volume} successfully deleted.");
    }
}
