using Slab.Common;
using Xunit;

namespace Slab.Tests.Nbd;

/// <summary>Runs the real NBD client tools; a missing tool fails the test naming the package to install.</summary>
internal static class NbdTools
{
    private static readonly Dictionary<string, string> Packages = new()
    {
        ["nbdinfo"] = "libnbd-bin",
        ["nbdcopy"] = "libnbd-bin",
        ["qemu-img"] = "qemu-utils",
        ["fio"] = "fio",
        ["sha256sum"] = "coreutils",
    };

    public static void Require(string tool)
    {
        var found = (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Any(dir => File.Exists(Path.Combine(dir, tool)));
        Assert.True(found, $"'{tool}' is not installed; install the Debian package '{Packages.GetValueOrDefault(tool, tool)}'.");
    }

    /// <summary>Runs the tool (time limit as a failure bound) and asserts exit code 0; returns stdout.</summary>
    public static async Task<string> RunAsync(string tool, params string[] arguments)
    {
        Require(tool);
        var result = await ExternalCommand.RunAsync(tool, arguments, CancellationToken.None, TimeSpan.FromMinutes(3));
        Assert.True(result.Succeeded, $"{tool} {string.Join(' ', arguments)} exited {result.ExitCode}:\n{result.StandardError}\n{result.StandardOutput}");
        return result.StandardOutput;
    }

    /// <summary>Runs the tool and returns its result whatever the exit code.</summary>
    public static Task<CommandResult> TryRunAsync(string tool, params string[] arguments)
    {
        Require(tool);
        return ExternalCommand.RunAsync(tool, arguments, CancellationToken.None, TimeSpan.FromMinutes(3));
    }
}
