using System.Diagnostics;
using System.Text;
using Tmds.Linux;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A private dockerd (Debian docker.io) for one test: its own --data-root, --exec-root, API socket
/// and pid file under a temp root, no bridge, no iptables; it starts its own containerd there.
/// dockerd finds plugins only in fixed places (/run/docker/plugins, /etc/docker/plugins,
/// /usr/lib/docker/plugins), so the test's slabd is made known to it by a spec file
/// /etc/docker/plugins/DRIVER.spec naming the slabd's plugin socket, with a driver name unique to
/// this daemon (<see cref="Driver"/>). Images are imported from busybox-static's /bin/busybox.
/// Disposing removes everything, also after a failure: containers, volumes, the daemon and its
/// containerd and shims, mounts under its root, the root, and the spec file.
/// </summary>
public sealed class Dockerd : IAsyncDisposable
{
    public const string Image = "slab-test-busybox:1";

    public const string SpecDirectory = "/etc/docker/plugins";

    private readonly ProcessLog _log = new();
    private DaemonProcess? _process;

    private Dockerd(string root, string pluginSocket)
    {
        Root = root;
        PluginSocket = pluginSocket;
        Driver = "slab-" + Path.GetFileName(root);
    }

    /// <summary>Short temp root: socket paths stay under the 108-byte limit.</summary>
    public string Root { get; }

    /// <summary>The slabd plugin socket the spec file names.</summary>
    public string PluginSocket { get; }

    /// <summary>The volume driver name this daemon knows the slabd as (the spec file's name).</summary>
    public string Driver { get; }

    public string Socket => Path.Combine(Root, "docker.sock");

    public string SpecFile => Path.Combine(SpecDirectory, Driver + ".spec");

    public string Log => _log.ToString();

    /// <summary>The docker CLI of the docker.io package (same version as the daemon) when present.</summary>
    public static string Cli => File.Exists("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

    /// <summary>Starts a dockerd that knows the slabd at <paramref name="pluginSocket"/> as <see cref="Driver"/>, with <see cref="Image"/> imported.</summary>
    public static async Task<Dockerd> StartAsync(string pluginSocket)
    {
        HostCommand.RequireTool("dockerd", "docker.io");
        if (!File.Exists("/bin/busybox"))
        {
            throw new InvalidOperationException("/bin/busybox is missing: apt-get install busybox-static (scripts/test installs it)");
        }

        var daemon = new Dockerd(Path.Combine("/tmp", "dk-" + Guid.NewGuid().ToString("N")[..8]), pluginSocket);
        try
        {
            Directory.CreateDirectory(daemon.Root);
            Directory.CreateDirectory(SpecDirectory);
            await File.WriteAllTextAsync(daemon.SpecFile, "unix://" + pluginSocket + "\n");
            await daemon.StartProcessAsync();
            await daemon.ImportImageAsync();
            return daemon;
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs the docker CLI against this daemon.</summary>
    public Task<HostCommand.Result> RunAsync(params string[] arguments)
        => HostCommand.RunAsync(Cli, ["-H", "unix://" + Socket, .. arguments], TimeSpan.FromMinutes(4));

    /// <summary>As <see cref="RunAsync"/>; throws unless it exits 0; returns stdout.</summary>
    public async Task<string> OkAsync(params string[] arguments)
    {
        var result = await RunAsync(arguments);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"docker {string.Join(' ', arguments)} failed: {result}");
        }

        return result.Stdout;
    }

    /// <summary><c>docker run --rm --network none</c> of <see cref="Image"/> with <paramref name="arguments"/> before the image and <paramref name="command"/> after.</summary>
    public Task<HostCommand.Result> RunContainerAsync(string[] arguments, params string[] command)
        => RunAsync(["run", "--rm", "--network", "none", .. arguments, Image, .. command]);

    /// <summary>Starts dockerd on this root (again); returns when its API answers.</summary>
    public async Task StartProcessAsync()
    {
        if (_process is { HasExited: false })
        {
            throw new InvalidOperationException("dockerd is already running");
        }

        string[] arguments =
        [
            "--data-root", Path.Combine(Root, "data"), "--exec-root", Path.Combine(Root, "exec"),
            "--host", "unix://" + Socket, "--pidfile", Path.Combine(Root, "docker.pid"),
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
        ];
        var process = _process = DaemonProcess.Start("dockerd", arguments, _log, readyMarker: null, "dockerd");
        await Poll.UntilAsync(
            async () => process.HasExited
                ? throw new InvalidOperationException($"dockerd exited during start-up:\n{Log}")
                : (await HostCommand.RunAsync(Cli, ["-H", "unix://" + Socket, "version"], TimeSpan.FromSeconds(20))).ExitCode == 0,
            TimeSpan.FromSeconds(90),
            "dockerd's API");
    }

    /// <summary>SIGTERM (dockerd stops its containers, which unmounts their volumes) and wait; killed after 60 s.</summary>
    public async Task StopAsync()
    {
        if (_process is not { HasExited: false } process)
        {
            return;
        }

        await process.StopOrKillAsync(TimeSpan.FromSeconds(60));
        process.Dispose();
        _process = null;
    }

    public async Task RestartAsync()
    {
        await StopAsync();
        await StartProcessAsync();
    }

    private async Task ImportImageAsync()
    {
        var image = Path.Combine(Root, "image");
        var bin = Path.Combine(image, "bin");
        Directory.CreateDirectory(bin);
        File.Copy("/bin/busybox", Path.Combine(bin, "busybox"));
        foreach (var applet in new[] { "sh", "cat", "echo", "ls", "sync", "sleep", "test", "stat", "true" })
        {
            File.CreateSymbolicLink(Path.Combine(bin, applet), "busybox");
        }

        var tar = Path.Combine(Root, "image.tar");
        await HostCommand.CheckedAsync("tar", "-C", image, "-cf", tar, ".");
        await OkAsync("import", tar, Image);
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            // Containers first (their Unmounts reach the plugin while slabd still runs), then volumes.
            var containers = await RunAsync("ps", "-aq");
            foreach (var id in containers.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                await RunAsync("rm", "-f", id);
            }

            var volumes = await RunAsync("volume", "ls", "-q");
            foreach (var name in volumes.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                await RunAsync("volume", "rm", "-f", name);
            }
        }

        await StopAsync();
        KillProcessesUnderRoot();
        File.Delete(SpecFile);
        await HostCleanup.RemoveEverythingUnderAsync(Root);
    }

    /// <summary>containerd and shims dockerd left (a daemon that was killed): every process naming the root.</summary>
    private void KillProcessesUnderRoot()
    {
        var prefix = Root + "/";
        foreach (var pidDir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(pidDir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            try
            {
                if (File.ReadAllText(Path.Combine(pidDir, "cmdline")).Replace('\0', ' ').Contains(prefix, StringComparison.Ordinal))
                {
                    _ = LibC.kill(pid, LibC.SIGKILL);
                }
            }
            catch (IOException)
            {
                // gone already
            }
            catch (UnauthorizedAccessException)
            {
                // not ours to read
            }
        }
    }
}
