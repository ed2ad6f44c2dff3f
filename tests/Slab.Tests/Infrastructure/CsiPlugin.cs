extern alias cli;
using Csi.V1;
using Grpc.Net.Client;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A real slab-csi process on its own unix socket, pointed at a slabd, and the CSI clients a CO
/// uses on it (kubelet: Identity + Node; the sidecars: Identity + Controller). Disposing stops it
/// and removes its socket directory; <see cref="RestartAsync"/> restarts it between calls.
/// </summary>
public sealed class CsiPlugin : IAsyncDisposable
{
    private readonly ProcessLog _log = new();
    private readonly string[] _arguments;
    private DaemonProcess? _process;
    private GrpcChannel? _channel;

    private CsiPlugin(string directory, string[] arguments)
    {
        Directory = directory;
        _arguments = arguments;
    }

    public string Directory { get; }

    public string Socket => Path.Combine(Directory, "csi.sock");

    public string Log => _log.ToString();

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
        _process = DaemonProcess.Start("dotnet", [BuildOutputs.SlabCsi, .. _arguments], _log, "slab-csi ready", "slab-csi");
        await _process.WaitReadyAsync(TimeSpan.FromSeconds(60));
    }

    private async Task StopProcessAsync()
    {
        _channel?.Dispose();
        _channel = null;
        if (_process is not null)
        {
            await _process.StopOrKillAsync(TimeSpan.FromSeconds(30));
            _process.Dispose();
            _process = null;
        }
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
