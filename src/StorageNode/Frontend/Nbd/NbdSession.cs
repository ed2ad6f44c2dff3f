using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Frontend.Nbd;

/// <summary>
/// Serves the NBD protocol (fixed newstyle handshake, then transmission) on one client connection.
/// </summary>
/// <remarks>
/// <para>The session runs over any <see cref="IDuplexPipe"/>: Kestrel's connection transport in
/// slabd (see <see cref="NbdSocketListener"/>), in-memory pipes in tests and benchmarks.</para>
/// <para>Threading: <see cref="RunAsync"/> is called once. Its reader loop parses requests and
/// dispatches each to the thread pool, so up to <see cref="NbdServerOptions.MaxInFlightPerConnection"/>
/// target calls run concurrently and complete in any order; replies are serialised on the output by an
/// async lock. When all slots are busy the reader stops reading (back-pressure, no unbounded queue).</para>
/// <para>Lifetime: <see cref="RunAsync"/> returns after the client disconnected (or was disconnected for a
/// protocol violation or the handshake timeout), every in-flight request finished, the export lease was
/// disposed and both pipe ends were completed. Protocol errors never escape; target failures become
/// NBD error replies.</para>
/// <para>Steady-state requests allocate nothing: slots are pre-allocated, payload buffers are rented
/// from <see cref="Buffers.AlignedBufferPool.Shared"/>, and request processing uses pooled async state.</para>
/// </remarks>
public sealed partial class NbdSession
{
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly IExportCatalog _catalog;
    private readonly NbdServerOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly string _connectionId;

    private IBlockTargetLease? _lease;

    /// <param name="transport">The connection; the session completes both ends when it ends.</param>
    /// <param name="catalog">Resolves export names; leases are disposed by the session.</param>
    /// <param name="options">Per-connection limits (validated here).</param>
    /// <param name="timeProvider">Clock for the handshake timeout.</param>
    /// <param name="logger">Destination of the session's logs.</param>
    /// <param name="connectionId">Names the connection in logs.</param>
    public NbdSession(
        IDuplexPipe transport,
        IExportCatalog catalog,
        NbdServerOptions options,
        TimeProvider timeProvider,
        ILogger logger,
        string connectionId = "")
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        options.Validate();
        _input = transport.Input;
        _output = transport.Output;
        _catalog = catalog;
        _options = options;
        _timeProvider = timeProvider;
        _logger = logger;
        _connectionId = connectionId;
    }

    /// <summary>
    /// Runs the connection to its end. <paramref name="connectionClosed"/> signals that the transport is
    /// gone (Kestrel's <c>ConnectionClosed</c>) or that the server shuts down; it is also passed to the
    /// target calls in flight. Never throws for protocol or transport failures.
    /// </summary>
    public async Task RunAsync(CancellationToken connectionClosed)
    {
        NbdLog.Connected(_logger, _connectionId);
        try
        {
            if (await HandshakeAsync(connectionClosed))
            {
                await TransmitAsync(connectionClosed);
            }
        }
        catch (OperationCanceledException) when (connectionClosed.IsCancellationRequested)
        {
            NbdLog.TransportEnded(_logger, _connectionId, "connection closed");
        }
        catch (IOException ex)
        {
            NbdLog.TransportEnded(_logger, _connectionId, ex.Message);
        }
        catch (Exception ex)
        {
            NbdLog.SessionCrashed(_logger, _connectionId, ex);
        }
        finally
        {
            await ReleaseLeaseAsync();
            await _input.CompleteAsync();
            await _output.CompleteAsync();
            NbdLog.Disconnected(_logger, _connectionId);
        }
    }

    private async ValueTask ReleaseLeaseAsync()
    {
        var lease = _lease;
        _lease = null;
        if (lease is null)
        {
            return;
        }

        try
        {
            await lease.DisposeAsync();
        }
        catch (Exception ex)
        {
            NbdLog.LeaseDisposeFailed(_logger, _connectionId, ex);
        }
    }
}
