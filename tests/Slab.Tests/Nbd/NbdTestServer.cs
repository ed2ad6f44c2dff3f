using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Frontend.Nbd;

namespace Slab.Tests.Nbd;

/// <summary>
/// slabd's NBD listener, in process, on a unix socket in a fresh temp directory. Dispose stops it
/// (ending every session) and deletes the directory; a failed start cleans up before rethrowing.
/// </summary>
public sealed class NbdTestServer : IAsyncDisposable
{
    private readonly NbdSocketListener _listener;
    private readonly ILoggerFactory _loggers;
    private readonly DirectoryInfo _directory;
    private int _disposed;

    private NbdTestServer(NbdSocketListener listener, ILoggerFactory loggers, DirectoryInfo directory, string socketPath)
    {
        _listener = listener;
        _loggers = loggers;
        _directory = directory;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    /// <summary>Directory for scratch files of the test; deleted with the server.</summary>
    public string TempDirectory => _directory.FullName;

    /// <summary>The libnbd URI of <paramref name="export"/>.</summary>
    public string Uri(string export) => $"nbd+unix:///{export}?socket={SocketPath}";

    public static async Task<NbdTestServer> StartAsync(IExportCatalog catalog, NbdServerOptions? options = null)
    {
        var directory = Directory.CreateTempSubdirectory("slab-nbd-");
        var loggers = LoggerFactory.Create(b => b.AddSimpleConsole().SetMinimumLevel(LogLevel.Warning));
        var listener = new NbdSocketListener(catalog, options ?? new NbdServerOptions(), TimeProvider.System, loggers);
        try
        {
            var socketPath = Path.Combine(directory.FullName, "nbd.sock");
            listener.ListenUnix(socketPath);
            listener.Start();
            return new NbdTestServer(listener, loggers, directory, socketPath);
        }
        catch
        {
            await listener.DisposeAsync();
            loggers.Dispose();
            directory.Delete(recursive: true);
            throw;
        }
    }

    /// <summary>Stops the listener and deletes the directory; idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await _listener.DisposeAsync();
        }
        finally
        {
            _loggers.Dispose();
            _directory.Delete(recursive: true);
        }
    }
}
