using Slab.Common;

namespace Slab.Host;

/// <summary>
/// Runs host tools through <see cref="ExternalCommand"/> and turns "not installed" into
/// <see cref="HostAttachError.ToolMissing"/> naming the Debian package.
/// </summary>
internal static class HostTools
{
    private static readonly Dictionary<string, string> s_packages = new(StringComparer.Ordinal)
    {
        ["nbdfuse"] = "libnbd-bin",
        ["fusermount3"] = "fuse3",
        ["nbd-client"] = "nbd-client",
        ["mkfs.ext4"] = "e2fsprogs",
        ["resize2fs"] = "e2fsprogs",
        ["e2fsck"] = "e2fsprogs",
        ["mkfs.xfs"] = "xfsprogs",
        ["xfs_growfs"] = "xfsprogs",
        ["losetup"] = "mount",
        ["mount"] = "mount",
        ["umount"] = "mount",
        ["blkid"] = "util-linux",
        ["sh"] = "dash",
    };

    private static readonly string[] s_searchPath =
        (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Concat(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .Distinct(StringComparer.Ordinal)
        .ToArray();

    /// <summary>The Debian package that installs <paramref name="tool"/>.</summary>
    public static string PackageOf(string tool) => s_packages.TryGetValue(tool, out var package) ? package : "(unknown)";

    /// <summary>The full path of <paramref name="tool"/>, or null when it is not on PATH or in the usual sbin/bin directories.</summary>
    public static string? Find(string tool)
    {
        foreach (var directory in s_searchPath)
        {
            var candidate = Path.Combine(directory, tool);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Throws <see cref="HostAttachError.ToolMissing"/> unless the tool is installed.</summary>
    public static string Require(string tool) => Find(tool) ?? throw Missing(tool, null);

    public static HostAttachException Missing(string tool, Exception? inner) =>
        new(HostAttachError.ToolMissing, $"{tool} is not installed; install the Debian package '{PackageOf(tool)}'", inner)
        {
            Tool = tool,
            DebianPackage = PackageOf(tool),
        };

    /// <summary>Runs the tool and returns its result whatever the exit code; a missing tool or a timeout throws.</summary>
    public static async Task<CommandResult> RunAsync(string tool, IReadOnlyList<string> arguments, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        var path = Require(tool);
        try
        {
            return await ExternalCommand.RunAsync(path, arguments, cancellationToken, timeout);
        }
        catch (ExternalCommandException ex) when (ex.Result.ExitCode == 127)
        {
            throw Missing(tool, ex);
        }
        catch (ExternalCommandException ex)
        {
            throw new HostAttachException(HostAttachError.DeviceFailed, ex.Message, ex);
        }
    }

    /// <summary>Runs the tool; a non-zero exit is <see cref="HostAttachError.DeviceFailed"/> with the tool's diagnostic.</summary>
    public static async Task<string> RunCheckedAsync(string tool, IReadOnlyList<string> arguments, CancellationToken cancellationToken, TimeSpan? timeout = null)
    {
        var result = await RunAsync(tool, arguments, cancellationToken, timeout);
        if (!result.Succeeded)
        {
            throw Failed(tool, arguments, result);
        }

        return result.StandardOutput;
    }

    public static HostAttachException Failed(string tool, IReadOnlyList<string> arguments, CommandResult result) =>
        new(HostAttachError.DeviceFailed, $"'{tool} {string.Join(' ', arguments)}' failed with exit code {result.ExitCode}: {result.Diagnostic}",
            new ExternalCommandException(tool, result));
}
