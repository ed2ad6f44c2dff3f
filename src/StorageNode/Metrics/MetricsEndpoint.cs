using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Slab.Metrics;

/// <summary>
/// The HTTP side of <c>/metrics</c>: slabd's Kestrel listens on the metrics port too (HTTP/1.1, what
/// Prometheus speaks); a connection middleware marks that listener's connections and a pipeline
/// branch, ahead of the gRPC endpoints, answers them alone: <c>GET /metrics</c> with the exposition,
/// any other path 404, another method 405. gRPC is never served there, nor metrics on the API ports.
/// </summary>
public static partial class MetricsEndpoint
{
    /// <summary>The one path served.</summary>
    public const string MetricsPath = "/metrics";

    /// <summary>Sets up the metrics port's Kestrel listener: HTTP/1.1, its connections marked as the metrics'.</summary>
    public static void ConfigureListener(ListenOptions listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.Protocols = HttpProtocols.Http1;
        listen.Use(next => connection =>
        {
            connection.Features.Set(MetricsConnection.Instance);
            return next(connection);
        });
    }

    /// <summary>Adds the metrics branch to the request pipeline: it answers the metrics port's requests alone.</summary>
    public static void MapMetrics(this WebApplication app)
        => app.UseWhen(
            context => context.Features.Get<MetricsConnection>() is not null,
            branch => branch.Run(ServeAsync));

    /// <summary>Logs where the metrics are served (tests read the port from this line when it was 0).</summary>
    public static void LogServing(ILogger logger, IPEndPoint endPoint) => LogListening(logger, endPoint);

    private static async Task ServeAsync(HttpContext context)
    {
        var request = context.Request;
        var response = context.Response;
        if (request.Path != MetricsPath)
        {
            await PlainAsync(response, StatusCodes.Status404NotFound, $"not found: this port serves only GET {MetricsPath}\n", context.RequestAborted).ConfigureAwait(false);
            return;
        }

        if (!HttpMethods.IsGet(request.Method) && !HttpMethods.IsHead(request.Method))
        {
            response.Headers.Allow = "GET, HEAD";
            await PlainAsync(response, StatusCodes.Status405MethodNotAllowed, $"{MetricsPath} answers GET only\n", context.RequestAborted).ConfigureAwait(false);
            return;
        }

        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = NodeMetrics.ContentType;
        if (HttpMethods.IsHead(request.Method))
        {
            return;
        }

        var metrics = context.RequestServices.GetRequiredService<NodeMetrics>();
        await metrics.ExportAsync(response.Body, context.RequestAborted).ConfigureAwait(false);
    }

    private static async Task PlainAsync(HttpResponse response, int status, string text, CancellationToken cancellationToken)
    {
        response.StatusCode = status;
        response.ContentType = "text/plain; charset=utf-8";
        await response.WriteAsync(text, cancellationToken).ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "metrics on http://{EndPoint}/metrics")]
    private static partial void LogListening(ILogger logger, IPEndPoint endPoint);

    /// <summary>Marks a connection accepted on the metrics port.</summary>
    private sealed class MetricsConnection
    {
        public static readonly MetricsConnection Instance = new();
    }
}
