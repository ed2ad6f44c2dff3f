extern alias cli;
using System.Diagnostics;
using System.Text;
using Csi.V1;
using Grpc.Net.Client;
using Tmds.Linux;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A real slab-csi process on its own unix socket, pointed at a slabd, and the CSI clients a CO
/// uses on it (kubelet: Identity + Node; the sidecars: Identity + Controller). Disposing stops it
/// and removes its socket directory; <see cref="RestartAsync"/> restarts it between calls.
/// </summary>
public sealed class CsiPlugin : IAsyncDisposable
{
    private readonly StringBuilder _log = new();
    private readonly Lock _logLock = new();
    private readonly string[] _arguments;
    private Process? _process;
    private GrpcChannel? _channel;
    private TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private CsiPlugin(string directory, string[] arguments)
    {
        Directory = directory;
        _arguments = arguments;
    }

    public string Directory { get; }

    public string Socket => Path.Combine(Directory, "csi.sock");

    public string Log
    {
        get
        {
            lock (_logLock)
            {
                return _log.ToString();
            }
        }
    }

    public global::Csi.V1.Identity.IdentityClient Identity => new(Channel);

    public global::Csi.V1.Controller.ControllerClient Controller => new(Channel);

    public global::Csi.V1.Node.NodeClient Node => new(Channel);

    private GrpcChannel Channel => _channel ??= ApiChannel.ForUnixSocket(Socket);

    /// <summary>Starts slab-csi in <paramref name="mode"/> against the slabd at <paramref name="slabdEndpoint"/>.</summary>
    public static async Task<CsiPlugin> StartAsync(string slabdEndpoint, string mode = "all", string? nodeId = null)
    {
        var directory = Path.Combine("/tmp", "slab-csi-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(directory);
        string[] arguments = ["--endpoint", "unix://" + Path.Combine(directory, "csi.sock"), "--mode", mode, "--slabd", slabdEndpoint];
        if (nodeId is not null)
            arguments = [.. arguments, "--node-id", nodeId];
        var plugin = new CsiPlugin(directory, arguments);
        try
        {
            await plugin.StartProcessAsync();
            return plugin;
        }
        catch
        {
            await plugin.DisposeAsync();
            throw;
        }
    }

    /// <summary>Stops slab-csi (SIGTERM) and starts it again on the same socket: a plugin restart as a CO sees it.</summary>
    public async Task RestartAsync()
    {
        await StopProcessAsync();
        await StartProcessAsync();
    }

    private async Task StartProcessAsync()
    {
        _ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(BuildOutputs.SlabCsi);
        foreach (var argument in _arguments)
            info.ArgumentList.Add(argument);
        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => OnOutput(e.Data);
        process.ErrorDataReceived += (_, e) => OnOutput(e.Data);
        process.Exited += (_, _) => _ready.TrySetException(new InvalidOperationException($"slab-csi exited during start-up:\n{Log}"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        await _ready.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }

    private void OnOutput(string? line)
    {
        if (line is null)
            return;
        lock (_logLock)
            _log.AppendLine(line);
        if (line.Contains("slab-csi ready", StringComparison.Ordinal))
            _ready.TrySetResult();
    }

    private async Task StopProcessAsync()
    {
        _channel?.Dispose();
        _channel = null;
        if (_process is { HasExited: false } process)
        {
            _ = LibC.kill(process.Id, LibC.SIGTERM);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
        }

        _process?.Dispose();
        _process = null;
    }

    public async ValueTask DisposeAsync()
    {
        await StopProcessAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
