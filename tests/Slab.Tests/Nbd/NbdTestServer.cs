using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Frontend.Nbd;

namespace Slab.Tests.Nbd;

/// <summary>
/// A minimal in-process Kestrel serving NBD on a unix socket in a fresh temp directory. Dispose stops
/// the host and deletes the directory; a failed start cleans up before rethrowing.
/// </summary>
public sealed class NbdTestServer : IAsyncDisposable
{
    private static readonly TimeSpan StartStopTimeout = TimeSpan.FromSeconds(30);

    private readonly WebApplication _app;
    private readonly DirectoryInfo _directory;

    private NbdTestServer(WebApplication app, DirectoryInfo directory, string socketPath)
    {
        _app = app;
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
        WebApplication? app = null;
        try
        {
            var socketPath = Path.Combine(directory.FullName, "nbd.sock");
            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = directory.FullName });
            builder.Logging.ClearProviders();
            builder.Logging.AddSimpleConsole();
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Services.AddSingleton(catalog);
            builder.Services.AddNbdFrontend(options);
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenNbd(socketPath, tcpPort: null));
            app = builder.Build();
            using var timeout = new CancellationTokenSource(StartStopTimeout);
            await app.StartAsync(timeout.Token);
            return new NbdTestServer(app, directory, socketPath);
        }
        catch
        {
            if (app is not null)
            {
                await app.DisposeAsync();
            }

            directory.Delete(recursive: true);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(StartStopTimeout);
            await _app.StopAsync(timeout.Token);
        }
        finally
        {
            await _app.DisposeAsync();
            _directory.Delete(recursive: true);
        }
    }
}
