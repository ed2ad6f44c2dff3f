using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Slab.Frontend.Nbd;

/// <summary>Wires the NBD frontend into DI and Kestrel.</summary>
/// <example>
/// <code>
/// builder.Services.AddSingleton&lt;IExportCatalog, VolumeExportCatalog&gt;();
/// builder.Services.AddNbdFrontend(new NbdServerOptions { MaxInFlightPerConnection = 128 });
/// builder.WebHost.ConfigureKestrel(k => k.ListenNbd(NbdDefaults.UnixSocketPath, NbdDefaults.TcpPort));
/// // or, per listener: k.ListenUnixSocket(path, listen => listen.UseNbd());
/// </code>
/// </example>
public static class NbdFrontendExtensions
{
    /// <summary>
    /// Registers <see cref="NbdConnectionHandler"/>, the options (defaults when null) and
    /// <see cref="TimeProvider.System"/> unless a TimeProvider is already registered. The caller
    /// registers the <see cref="Block.IExportCatalog"/> the frontend serves.
    /// </summary>
    public static IServiceCollection AddNbdFrontend(this IServiceCollection services, NbdServerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        options ??= new NbdServerOptions();
        options.Validate();
        services.AddSingleton(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<NbdConnectionHandler>();
        return services;
    }

    /// <summary>Makes this listener speak NBD (requires <see cref="AddNbdFrontend"/>).</summary>
    public static ListenOptions UseNbd(this ListenOptions listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.UseConnectionHandler<NbdConnectionHandler>();
        return listen;
    }

    /// <summary>
    /// Listens for NBD on a unix socket and/or TCP (skip either by passing null). The socket's
    /// directory is created; a stale socket file left by a previous run is removed.
    /// </summary>
    /// <param name="tcpAddress">Address for the TCP listener; any address when null.</param>
    public static KestrelServerOptions ListenNbd(
        this KestrelServerOptions kestrel,
        string? unixSocketPath = NbdDefaults.UnixSocketPath,
        int? tcpPort = NbdDefaults.TcpPort,
        IPAddress? tcpAddress = null)
    {
        ArgumentNullException.ThrowIfNull(kestrel);
        if (unixSocketPath is not null)
        {
            PrepareUnixSocketPath(unixSocketPath);
            kestrel.ListenUnixSocket(unixSocketPath, listen => listen.UseNbd());
        }

        if (tcpPort is { } port)
        {
            kestrel.Listen(tcpAddress ?? IPAddress.IPv6Any, port, listen => listen.UseNbd());
        }

        return kestrel;
    }

    private static void PrepareUnixSocketPath(string path)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null)
        {
            Directory.CreateDirectory(directory);
        }

        // Only a socket is removed: any other file at that path is a configuration error that
        // binding reports.
        if (IsSocket(path))
        {
            File.Delete(path);
        }
    }

    private static unsafe bool IsSocket(string path)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        Tmds.Linux.stat st;
        fixed (byte* p = bytes)
        {
            return Tmds.Linux.LibC.lstat(p, &st) == 0 && Tmds.Linux.LibC.S_ISSOCK(st.st_mode);
        }
    }
}
