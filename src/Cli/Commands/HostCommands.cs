using Slab.Api.V1;
using Slab.Cli.Connection;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary><c>slabctl host attach|detach|mount|unmount</c>: act on this host.</summary>
internal static class HostCommands
{
    private static readonly ArgSpec _volume = new("VOLUME");
    private static readonly ArgSpec _path = new("PATH");

    public static CommandNode Build() =>
        new CommandNode("host", "Attach, detach, mount and unmount volumes on this host").Add(
            new CommandNode("attach", "Attach a volume to this host and print its device path")
            {
                Args = [_volume],
                Handler = AttachAsync,
            },
            new CommandNode("detach", "Detach a volume from this host (refused while mounted)")
            {
                Args = [_volume],
                Handler = DetachAsync,
            },
            new CommandNode("mount", "Mount a volume at PATH (attaches it and formats it on first use)")
            {
                Details = "A relative PATH is made absolute against the current directory.",
                Args = [_volume, _path],
                Flags = [new() { Name = "options", Short = 'o', ValueName = "OPT,...", Repeatable = true, Description = "mount(8) options, e.g. noatime,discard" }],
                Handler = MountAsync,
            },
            new CommandNode("unmount", "Unmount a volume from PATH")
            {
                Args = [_volume, _path],
                Handler = UnmountAsync,
            });

    private static async Task<int> AttachAsync(CommandContext ctx)
    {
        var response = await ctx.Api.MountAttach.AttachAsync(new AttachRequest { Volume = ctx.Arg(0) }, ctx.Api.Options(ApiConnection.LongDeadline));
        return ctx.Print(response, response.DevicePath);
    }

    private static async Task<int> DetachAsync(CommandContext ctx)
    {
        var volume = ctx.Arg(0);
        var response = await ctx.Api.MountAttach.DetachAsync(new DetachRequest { Volume = volume }, ctx.Api.Options(ApiConnection.LongDeadline));
        return ctx.Print(response, $"Volume {volume} successfully detached");
    }

    private static async Task<int> MountAsync(CommandContext ctx)
    {
        var volume = ctx.Arg(0);
        var path = AbsolutePath(ctx.Arg(1));
        var request = new MountRequest { Volume = volume, Path = path };
        request.Options.Add(ctx.NameList("options"));
        var response = await ctx.Api.MountAttach.MountAsync(request, ctx.Api.Options(ApiConnection.LongDeadline));
        return ctx.Print(response, $"Volume {volume} mounted at {response.Path} ({response.DevicePath}, {response.Fs})");
    }

    private static async Task<int> UnmountAsync(CommandContext ctx)
    {
        var volume = ctx.Arg(0);
        var path = AbsolutePath(ctx.Arg(1));
        var response = await ctx.Api.MountAttach.UnmountAsync(new UnmountRequest { Volume = volume, Path = path }, ctx.Api.Options(ApiConnection.LongDeadline));
        return ctx.Print(response, $"Volume {volume} successfully unmounted at {path}");
    }

    /// <summary>slabd's working directory is not ours: send absolute paths.</summary>
    private static string AbsolutePath(string path)
    {
        try
        {
            return Path.GetFullPath(path);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UsageException($"invalid PATH \"{path}\": {ex.Message}");
        }
    }
}
