using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Api.Docker;

/// <summary>
/// The HTTP side of the Docker plugin: requests that arrive on the plugin socket (and only those)
/// are answered by <see cref="DockerPluginHandler"/>; gRPC never answers there and the plugin never
/// answers on the API sockets. Kestrel listens on the socket (HTTP/1.1, which is what Docker speaks).
/// </summary>
public static partial class DockerPluginEndpoint
{
    /// <summary>The media type Docker sends and expects from plugins.</summary>
    public const string ContentType = "application/vnd.docker.plugins.v1.2+json";

    /// <summary>Sets up the plugin socket's Kestrel listener: HTTP/1.1 (what Docker speaks), its connections marked as the plugin's.</summary>
    public static void ConfigureListener(ListenOptions listen)
    {
        listen.Protocols = HttpProtocols.Http1;
        listen.Use(next => connection =>
        {
            connection.Features.Set(PluginConnection.Instance);
            return next(connection);
        });
    }

    /// <summary>Adds the plugin's branch to the request pipeline, ahead of the gRPC endpoints: it answers the plugin socket's requests alone.</summary>
    public static void MapDockerPlugin(this WebApplication app, DockerPluginOptions options)
        => app.UseWhen(
            context => context.Features.Get<PluginConnection>() is not null,
            branch => branch.Run(context => ServeAsync(context, options)));

    private static async Task ServeAsync(HttpContext context, DockerPluginOptions options)
    {
        var handler = context.RequestServices.GetRequiredService<DockerPluginHandler>();
        DockerReply reply;
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            reply = new DockerReply(405, """{"Err":"Docker plugin calls are POST requests"}"""u8.ToArray());
        }
        else if (await ReadBodyAsync(context.Request, options.MaxRequestBytes, context.RequestAborted).ConfigureAwait(false) is not { } body)
        {
            reply = new DockerReply(413, System.Text.Encoding.UTF8.GetBytes($$"""{"Err":"the request is larger than {{options.MaxRequestBytes}} bytes"}"""));
        }
        else
        {
            reply = await handler.HandleAsync(context.Request.Path.Value ?? "", body, context.RequestAborted).ConfigureAwait(false);
        }

        context.Response.StatusCode = reply.Status;
        context.Response.ContentType = ContentType;
        context.Response.ContentLength = reply.Body.Length;
        await context.Response.Body.WriteAsync(reply.Body, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Marks a connection accepted on the plugin socket.</summary>
    private sealed class PluginConnection
    {
        public static readonly PluginConnection Instance = new();
    }

    /// <summary>The whole body, or null when it is longer than <paramref name="limit"/>.</summary>
    private static async Task<byte[]?> ReadBodyAsync(HttpRequest request, int limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            return null;
        }

        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

}

/// <summary>
/// This slabd's claim on the plugin socket path: an exclusive flock on <c>SOCKET.lock</c> next to
/// it, held for the process's life (the kernel drops it when the process dies), so two slabds on a
/// host (a local cluster, a test) never take the same socket even when they start at once. Taken
/// before Kestrel listens; a socket file left by a crash is removed then.
/// </summary>
public sealed class DockerPluginSocketLock : IDisposable
{
    private readonly FileStream _lock;

    private DockerPluginSocketLock(string socketPath, FileStream held)
    {
        SocketPath = socketPath;
        _lock = held;
    }

    public string SocketPath { get; }

    /// <exception cref="SlabException">FailedPrecondition: another process holds the socket.</exception>
    public static DockerPluginSocketLock Acquire(string socketPath)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(socketPath))!);
        FileStream held;
        try
        {
            // FileShare.None takes flock(LOCK_EX | LOCK_NB) on Linux.
            held = new FileStream(socketPath + ".lock", FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new SlabException(
                SlabErrorCode.FailedPrecondition,
                $"the Docker plugin socket {socketPath} belongs to another slabd on this host ({e.Message}); give this one --docker-plugin-socket PATH or --no-docker-plugin",
                e);
        }

        held.SetLength(0);
        held.Write(System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
        held.Flush();
        File.Delete(socketPath); // ours now: a file here was left by a crash
        return new DockerPluginSocketLock(socketPath, held);
    }

    /// <summary>Removes the socket (the listener has stopped) and lets the path go.</summary>
    public void Dispose()
    {
        try
        {
            File.Delete(SocketPath);
        }
        catch (IOException)
        {
            // best effort: the next owner removes it
        }

        _lock.Dispose();
    }
}

/// <summary>
/// Mounts again, once the API serves, the volumes Docker held before slabd restarted; removes the
/// plugin socket when slabd stops, so Docker does not find a dead plugin there.
/// </summary>
public sealed partial class DockerPluginService(
    DockerPluginHandler handler,
    DockerPluginOptions options,
    DockerPluginSocketLock socket,
    IHostApplicationLifetime lifetime,
    ILogger<DockerPluginService> logger) : IHostedService
{
    private readonly CancellationTokenSource _stopping = new();
    private Task _restore = Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStarted.Register(() =>
        {
            LogServing(logger, options.SocketPath);
            _restore = Task.Run(() => handler.RestoreMountsAsync(_stopping.Token));
        });
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _restore.ConfigureAwait(false);
        _stopping.Dispose();
        socket.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker volume plugin listening on {Socket}")]
    private static partial void LogServing(ILogger logger, string socket);
}
