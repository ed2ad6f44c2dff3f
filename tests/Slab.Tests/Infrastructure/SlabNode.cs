using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Tmds.Linux;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A real slabd process on its own temp directory, sparse drive file and sockets (no TCP listeners
/// but its metrics, on a free port: <see cref="MetricsUrl"/>),
/// driven through the real slabctl. Disposing stops it and removes everything it or the test made:
/// mounts under its directory, loop devices over its files, nbdfuse processes, the directory.
/// </summary>
public sealed partial class SlabNode : IAsyncDisposable
{
    private readonly ProcessLog _log = new();
    private DaemonProcess? _process;

    private SlabNode(string root, long driveBytes)
    {
        Root = root;
        DriveBytes = driveBytes;
        Directory.CreateDirectory(DataDirectory);
        Directory.CreateDirectory(RunDirectory);
    }

    /// <summary>Temp root: short, so socket paths stay under the 108-byte limit.</summary>
    public string Root { get; }

    public long DriveBytes { get; }

    public string DataDirectory => Path.Combine(Root, "data");

    public string RunDirectory => Path.Combine(Root, "run");

    public string DrivePath => Path.Combine(Root, "drive.img");

    public string ApiSocket => Path.Combine(RunDirectory, "api.sock");

    public string NbdSocket => Path.Combine(RunDirectory, "nbd.sock");

    public string Endpoint => "unix://" + ApiSocket;

    public int? Pid => _process is { HasExited: false } p ? p.Id : null;

    /// <summary>
    /// Where the running slabd serves <c>/metrics</c> (<c>http://ADDR:PORT/metrics</c>, from its
    /// "metrics on ..." log line); null when it was started with <c>--no-metrics</c> or is not running.
    /// </summary>
    public string? MetricsUrl { get; private set; }

    /// <summary>The network namespace slabd runs in (through <c>ip netns exec</c>); null: the test's own.</summary>
    public string? NetworkNamespace { get; private set; }

    public string Log => _log.ToString();

    /// <summary>The NBD URI of an export (volume or VOL@SNAP) on the node's unix socket.</summary>
    public string NbdUri(string export) => $"nbd+unix:///{export}?socket={NbdSocket}";

    public static string NewRoot() => Path.Combine("/tmp", "slab-" + Guid.NewGuid().ToString("N")[..8]);

    /// <summary>Creates the node's drive file and starts slabd; returns when it is ready.</summary>
    public static Task<SlabNode> StartAsync(long driveBytes = 8L << 30, params string[] extraArguments)
        => StartAsync(driveBytes, networkNamespace: null, extraArguments);

    /// <summary>Like <see cref="StartAsync(long, string[])"/>, with slabd inside <paramref name="networkNamespace"/> when given.</summary>
    public static async Task<SlabNode> StartAsync(long driveBytes, string? networkNamespace, string[] extraArguments)
    {
        var node = new SlabNode(NewRoot(), driveBytes) { NetworkNamespace = networkNamespace };
        try
        {
            using (var drive = new FileStream(node.DrivePath, FileMode.CreateNew))
            {
                drive.SetLength(driveBytes);
            }

            await node.StartProcessAsync(extraArguments);
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    public static string SlabdDll => BuildOutputs.Slabd;

    public static string SlabctlDll => BuildOutputs.Slabctl;

    /// <summary>
    /// slabd's arguments. The Docker plugin is off unless <paramref name="extra"/> asks for it: on a
    /// host with /run/docker/plugins every test slabd would otherwise claim the same socket there.
    /// Metrics are on a free port (<c>--metrics-port 0</c>) unless <paramref name="extra"/> says
    /// otherwise (or gives <c>--port-base</c>, which puts them on P+5), so parallel tests never share
    /// port 9506.
    /// </summary>
    public IReadOnlyList<string> DaemonArguments(params string[] extra) =>
    [
        SlabdDll, "--data-dir", DataDirectory, "--run-dir", RunDirectory, "--drive", DrivePath,
        "--api-port", "0", "--nbd-port", "0", "--skip-pool-benchmark", "--node-name", "test-node",
        .. extra.Any(a => a.StartsWith("--docker-plugin", StringComparison.Ordinal) || a == "--no-docker-plugin") ? [] : new[] { "--no-docker-plugin" },
        .. extra.Any(a => a.StartsWith("--metrics-port", StringComparison.Ordinal) || a is "--no-metrics" or "--port-base") ? [] : new[] { "--metrics-port", "0" },
        .. extra,
    ];

    /// <summary>Starts slabd (again) on this node's directories; returns when it logs that it is ready.</summary>
    public async Task StartProcessAsync(params string[] extraArguments)
    {
        if (Pid is not null)
        {
            throw new InvalidOperationException("slabd is already running");
        }

        // ip netns exec replaces itself with the command, so the process is slabd's own.
        string[] prefix = NetworkNamespace is null ? [] : ["netns", "exec", NetworkNamespace, "dotnet"];
        MetricsUrl = null;
        var logged = Log.Length;
        _process = DaemonProcess.Start(NetworkNamespace is null ? "dotnet" : "ip", [.. prefix, .. DaemonArguments(extraArguments)], _log, "slabd ready", "slabd");
        await _process.WaitReadyAsync(TimeSpan.FromSeconds(120));
        // slabd logs where its metrics are before it logs that it is ready.
        MetricsUrl = MetricsLine().Match(Log[logged..]) is { Success: true } line ? line.Groups[1].Value : null;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"metrics on (http://\S+/metrics)")]
    private static partial System.Text.RegularExpressions.Regex MetricsLine();

    /// <summary>SIGTERM and wait; returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan? timeout = null)
    {
        var process = _process ?? throw new InvalidOperationException("slabd is not running");
        var exitCode = await process.StopAsync(timeout ?? TimeSpan.FromSeconds(90));
        process.Dispose();
        _process = null;
        MetricsUrl = null;
        return exitCode;
    }

    /// <summary>SIGKILL: no cleanup, no flush — a crash.</summary>
    public async Task KillAsync()
    {
        var process = _process ?? throw new InvalidOperationException("slabd is not running");
        await process.KillAsync();
        process.Dispose();
        _process = null;
    }

    /// <summary>SIGSTOP: the process is frozen (a hung or cut-off host that may come back); <see cref="Resume"/> undoes it.</summary>
    public void Suspend() => (_process ?? throw new InvalidOperationException("slabd is not running")).Signal(LibC.SIGSTOP);

    /// <summary>SIGCONT after <see cref="Suspend"/> (harmless on a running process).</summary>
    public void Resume()
    {
        if (_process is { HasExited: false } process)
        {
            process.Signal(LibC.SIGCONT);
        }
    }

    /// <summary>Runs the real slabctl against this node.</summary>
    public Task<HostCommand.Result> CliAsync(params string[] arguments) => CliAtAsync(Endpoint, arguments);

    /// <summary>Runs slabctl, asserts exit 0, returns stdout.</summary>
    public Task<string> CliOkAsync(params string[] arguments) => CliOkAtAsync(Endpoint, arguments, () => $"slabd log:\n{Log}");

    /// <summary>Runs slabctl with --json and parses the output.</summary>
    public async Task<JsonElement> CliJsonAsync(params string[] arguments) => ParseJson(await CliOkAsync([.. arguments, "--json"]));

    /// <summary>Runs the real slabctl against <paramref name="endpoint"/> (a node this test did not start itself).</summary>
    public static Task<HostCommand.Result> CliAtAsync(string endpoint, params string[] arguments)
        => HostCommand.RunAsync("dotnet", [SlabctlDll, "--endpoint", endpoint, .. arguments]);

    /// <summary>As <see cref="CliAtAsync"/>; throws unless it exits 0 (with <paramref name="context"/> in the message); returns stdout.</summary>
    public static async Task<string> CliOkAtAsync(string endpoint, string[] arguments, Func<string>? context = null)
    {
        var result = await CliAtAsync(endpoint, arguments);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"slabctl {string.Join(' ', arguments)} at {endpoint} failed: {result}\n{context?.Invoke()}");
        }

        return result.Stdout;
    }

    /// <summary>As <see cref="CliOkAtAsync"/> with --json; the parsed output.</summary>
    public static async Task<JsonElement> CliJsonAtAsync(string endpoint, params string[] arguments) => ParseJson(await CliOkAtAsync(endpoint, [.. arguments, "--json"]));

    private static JsonElement ParseJson(string stdout)
    {
        using var document = JsonDocument.Parse(stdout);
        return document.RootElement.Clone();
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is not null)
        {
            await _process.StopOrKillAsync(TimeSpan.FromSeconds(60));
            _process.Dispose();
            _process = null;
        }

        await HostCleanup.RemoveEverythingUnderAsync(Root);
    }
}
