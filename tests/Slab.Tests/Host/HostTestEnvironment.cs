using System.Globalization;
using System.Runtime.Versioning;
using Slab.Common;
using Slab.Host;
using Xunit;

namespace Slab.Tests.Host;

/// <summary>
/// A private run directory and a real NBD server independent of slabd (<c>nbdkit memory 1G</c> on a
/// unix socket); everything a test made is removed on dispose, also when the test failed.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed class HostTestEnvironment : IAsyncDisposable
{
    public const long MiB = 1024 * 1024;

    private HostTestEnvironment(string root, int nbdkitPid)
    {
        Root = root;
        NbdkitPid = nbdkitPid;
        Options = new HostOptions(Path.Combine(root, "run"), AttachMethodPreference.NbdFuse);
        Attacher = new NbdFuseLoopAttacher(Options);
    }

    public string Root { get; }

    public int NbdkitPid { get; }

    public string Socket => Path.Combine(Root, "nbd.sock");

    public HostOptions Options { get; }

    public NbdFuseLoopAttacher Attacher { get; }

    public FilesystemManager Filesystems { get; } = new();

    public string AttachRoot => Path.Combine(Options.RunDirectory, "attach");

    public static async Task<HostTestEnvironment> StartAsync()
    {
        var root = Directory.CreateTempSubdirectory("slab-host-").FullName;
        try
        {
            var pid = await StartNbdkitAsync(root, "nbd.sock", "nbdkit.pid", "memory", "1G");
            return new HostTestEnvironment(root, pid);
        }
        catch
        {
            Directory.Delete(root, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Starts an nbdkit server on <c>DIRECTORY/SOCKET</c> with <paramref name="plugin"/>; returns its pid
    /// once it accepts connections. The caller stops it (<see cref="StopNbdkitAsync"/>).
    /// </summary>
    public static async Task<int> StartNbdkitAsync(string directory, string socketName, string pidFileName, params string[] plugin)
    {
        var socket = Path.Combine(directory, socketName);
        var pidFile = Path.Combine(directory, pidFileName);
        File.Delete(pidFile);
        int? pid = null;
        try
        {
            // nbdkit's forked server writes the pid file once it accepts connections (after the
            // launching process has exited), so wait for that file through inotify, not a sleep.
            using var watcher = new FileSystemWatcher(directory, pidFileName);
            var ready = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            void Check()
            {
                if (TryReadPid(pidFile) is { } found)
                {
                    ready.TrySetResult(found);
                }
            }

            watcher.Created += (_, _) => Check();
            watcher.Changed += (_, _) => Check();
            watcher.EnableRaisingEvents = true;
            await ExternalCommand.RunCheckedAsync("nbdkit", ["--unix", socket, "--pidfile", pidFile, .. plugin], CancellationToken.None);
            Check();
            pid = await ready.Task.WaitAsync(TimeSpan.FromSeconds(30));
            return pid.Value;
        }
        catch
        {
            if ((pid ?? TryReadPid(pidFile)) is { } started)
            {
                await StopNbdkitAsync(started);
            }

            throw;
        }
    }

    /// <summary>SIGTERM to an nbdkit server and wait for it to exit.</summary>
    public static async Task StopNbdkitAsync(int pid)
    {
        await ExternalCommand.RunAsync("kill", [pid.ToString(CultureInfo.InvariantCulture)], CancellationToken.None);
        await HostNative.WaitForProcessExitAsync(pid, TimeSpan.FromSeconds(10), CancellationToken.None);
    }

    private static int? TryReadPid(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 0 ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    public AttachSpec Spec(string volume, long sizeBytes) => new(volume, Socket, "slab-" + volume, sizeBytes);

    public string MountPath(string name) => Path.Combine(Root, "mnt", name);

    public static async Task<string> RunAsync(string tool, params string[] arguments) =>
        await ExternalCommand.RunCheckedAsync(tool, arguments, CancellationToken.None);

    public static async Task<long> BlockDeviceSizeAsync(string device) =>
        long.Parse((await RunAsync("blockdev", "--getsize64", device)).Trim(), CultureInfo.InvariantCulture);

    public static async Task<long> FilesystemSizeAsync(string mountPath)
    {
        var lines = (await RunAsync("df", "-B1", "--output=size", mountPath)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        return long.Parse(lines[^1].Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>Asserts the attachment left nothing: no loop on its file, no FUSE mount, no directory, no nbdfuse.</summary>
    public async Task AssertNothingLeftAsync(string volume, int? nbdfusePid = null)
    {
        var directory = Path.Combine(AttachRoot, volume);
        var losetup = await RunAsync("losetup", "-a");
        Assert.DoesNotContain(directory, losetup, StringComparison.Ordinal);
        var mounts = await File.ReadAllTextAsync("/proc/mounts");
        Assert.DoesNotContain(directory, mounts, StringComparison.Ordinal);
        Assert.False(Directory.Exists(directory), $"{directory} still exists");
        var nbdfuses = Directory.EnumerateDirectories("/proc")
            .Select(Path.GetFileName)
            .Where(name => int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(name => ReadCommandLine(int.Parse(name!, CultureInfo.InvariantCulture)))
            .Where(argv => argv.Contains("nbdfuse", StringComparison.Ordinal) && argv.Contains(directory, StringComparison.Ordinal))
            .ToList();
        Assert.Empty(nbdfuses);
        var relaySocket = new AttachmentLayout(Options).RelaySocketOf(volume);
        Assert.False(File.Exists(relaySocket), $"{relaySocket} still exists");
        Assert.DoesNotContain(Directory.EnumerateDirectories("/proc").Select(Path.GetFileName)
            .Where(name => int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .Select(name => ReadCommandLine(int.Parse(name!, CultureInfo.InvariantCulture))), argv => argv.Contains(relaySocket, StringComparison.Ordinal));
        if (nbdfusePid is { } pid)
        {
            Assert.False(File.Exists($"/proc/{pid}/cmdline") && ReadCommandLine(pid).Contains(directory, StringComparison.Ordinal));
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Unmount anything the test mounted under its root (deepest first), then let a fresh
        // attacher's crash recovery undo every attachment, then stop nbdkit and delete the root.
        try
        {
            var mounts = (await File.ReadAllLinesAsync("/proc/mounts"))
                .Select(line => line.Split(' ')[1].Replace("\\040", " ", StringComparison.Ordinal))
                .Where(path => path.StartsWith(Root + "/", StringComparison.Ordinal) && !path.StartsWith(AttachRoot + "/", StringComparison.Ordinal))
                .OrderByDescending(path => path.Length)
                .ToList();
            foreach (var mount in mounts)
            {
                await ExternalCommand.RunAsync("umount", ["-l", mount], CancellationToken.None);
            }

            await new NbdFuseLoopAttacher(Options).RecoverAsync(CancellationToken.None);
        }
        finally
        {
            try
            {
                if (File.Exists($"/proc/{NbdkitPid}/cmdline") && ReadCommandLine(NbdkitPid).Contains(Root, StringComparison.Ordinal))
                {
                    await ExternalCommand.RunAsync("kill", [NbdkitPid.ToString(CultureInfo.InvariantCulture)], CancellationToken.None);
                    await HostNative.WaitForProcessExitAsync(NbdkitPid, TimeSpan.FromSeconds(10), CancellationToken.None);
                }
            }
            finally
            {
                if (!(await File.ReadAllTextAsync("/proc/mounts")).Contains(Root, StringComparison.Ordinal))
                {
                    Directory.Delete(Root, recursive: true);
                }
            }
        }
    }

    private static string ReadCommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
        }
        catch (IOException)
        {
            return "";
        }
    }
}
