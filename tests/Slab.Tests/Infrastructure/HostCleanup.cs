namespace Slab.Tests.Infrastructure;

/// <summary>
/// Removes whatever a test left under a directory: mounts (deepest first, lazily), loop devices over
/// files there, nbdfuse/nbdkit processes naming it, and finally the directory.
/// </summary>
public static class HostCleanup
{
    /// <summary>Every other process's pid and command line (arguments joined by spaces).</summary>
    public static IEnumerable<(int Pid, string CommandLine)> Processes()
    {
        foreach (var pidDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(pidDir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            string cmdline;
            try
            {
                cmdline = File.ReadAllText(Path.Combine(pidDir, "cmdline")).Replace('\0', ' ');
            }
            catch (IOException)
            {
                continue;
            }
            catch (UnauthorizedAccessException)
            {
                continue;
            }

            yield return (pid, cmdline);
        }
    }

    public static async Task RemoveEverythingUnderAsync(string root)
    {
        var prefix = root.TrimEnd('/') + "/";

        // Processes first: a live nbdfuse keeps its FUSE mount busy.
        foreach (var (pid, cmdline) in Processes())
        {
            // slabd starts nbdfuse and its relays by full path (/usr/bin/nbdfuse).
            var program = Path.GetFileName(cmdline.Split(' ', 2)[0]);
            if (cmdline.Contains(prefix, StringComparison.Ordinal) && (program is "nbdfuse" or "nbdkit" || cmdline.Contains("slabd.dll", StringComparison.Ordinal)))
            {
                _ = Tmds.Linux.LibC.kill(pid, Tmds.Linux.LibC.SIGKILL);
            }
        }

        // Mounts under the root, deepest first; and mounts of loop devices backed by files under it.
        var loops = await LoopDevicesUnderAsync(prefix);
        var mounts = File.ReadAllLines("/proc/self/mountinfo")
            .Select(l => l.Split(' '))
            .Where(f => f.Length > 9)
            .Select(f => (MountPoint: f[4].Replace("\\040", " ", StringComparison.Ordinal), Source: f[Array.IndexOf(f, "-") + 2]))
            .Where(m => m.MountPoint.StartsWith(prefix, StringComparison.Ordinal) || loops.Contains(m.Source))
            .Select(m => m.MountPoint)
            .Distinct()
            .OrderByDescending(m => m.Length)
            .ToList();
        foreach (var mount in mounts)
        {
            await HostCommand.RunAsync("umount", ["-l", mount]);
        }

        // Loops listed before the unmounts too: once a FUSE mount under the root is detached, a loop
        // over a file in it no longer names the root (a killed slabd's attachment).
        loops.UnionWith(await LoopDevicesUnderAsync(prefix));
        foreach (var loop in loops)
        {
            await HostCommand.RunAsync("losetup", ["-d", loop]);
        }

        // FUSE mounts left by a killed nbdfuse.
        foreach (var line in File.ReadAllLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && fields[4].StartsWith(prefix, StringComparison.Ordinal))
            {
                await HostCommand.RunAsync("fusermount3", ["-u", "-z", fields[4]]);
                await HostCommand.RunAsync("umount", ["-l", fields[4]]);
            }
        }

        if (Directory.Exists(root))
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
                // A lazily unmounted filesystem may still hold a file for a moment; the next try removes it.
                await HostCommand.RunAsync("rm", ["-rf", root]);
            }
        }
    }

    private static async Task<HashSet<string>> LoopDevicesUnderAsync(string prefix)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        var list = await HostCommand.RunAsync("losetup", ["-a", "-n", "-O", "NAME,BACK-FILE", "--list"]);
        foreach (var line in list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[1].StartsWith(prefix, StringComparison.Ordinal))
            {
                result.Add(parts[0]);
            }
        }

        return result;
    }
}
