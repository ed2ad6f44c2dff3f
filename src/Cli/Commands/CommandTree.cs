using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary>slabctl's command tree (pxctl's names, aliases and flags).</summary>
internal static class CommandTree
{
    public static CommandNode Build() =>
        new CommandNode("slabctl", "slabctl manages Slab volumes, hosts, storage pools and the cluster.")
        {
            Details = "Exit codes: 0 success, 1 the operation failed or slabd could not be reached, 2 bad command line.",
        }.Add(
            StatusCommand.Build(),
            VolumeCommands.Build(),
            HostCommands.Build(),
            ClusterCommands.Build(),
            ServiceCommands.Build());
}
