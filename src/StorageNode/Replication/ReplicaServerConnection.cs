using System.IO.Pipelines;
using Microsoft.Extensions.Logging;

namespace Slab.Replication;

/// <summary>
/// The server side of one connection: hello (ReplicaServerConnection.Hello.cs), then the request
/// loop (ReplicaServerConnection.Requests.cs). Created and run by <see cref="ReplicaServer.ServeAsync"/>.
/// </summary>
internal sealed partial class ReplicaServerConnection
{
    private readonly ReplicaServer _server;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly ILogger _logger;
    private readonly string _connectionId;

    public ReplicaServerConnection(ReplicaServer server, IDuplexPipe transport, string connectionId)
    {
        _server = server;
        _input = transport.Input;
        _output = transport.Output;
        _logger = server.Logger;
        _connectionId = connectionId;
    }

    public async Task RunAsync(CancellationToken connectionClosed)
    {
        ReplicaLog.Connected(_logger, _connectionId);
        try
        {
            if (await HelloAsync(connectionClosed))
            {
                await ServeRequestsAsync(connectionClosed);
            }
        }
        catch (OperationCanceledException) when (connectionClosed.IsCancellationRequested)
        {
            ReplicaLog.TransportEnded(_logger, _connectionId, "connection closed");
        }
        catch (IOException ex)
        {
            ReplicaLog.TransportEnded(_logger, _connectionId, ex.Message);
        }
        catch (Exception ex)
        {
            ReplicaLog.ConnectionCrashed(_logger, _connectionId, ex);
        }
        finally
        {
            await _input.CompleteAsync();
            await _output.CompleteAsync();
            ReplicaLog.Disconnected(_logger, _connectionId);
        }
    }
}
