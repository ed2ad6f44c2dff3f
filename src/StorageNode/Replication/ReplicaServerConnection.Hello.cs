using System.Buffers;
using System.IO.Pipelines;

namespace Slab.Replication;

// The hello exchange: once per connection, so clarity over allocation-freedom.
internal sealed partial class ReplicaServerConnection
{
    private ushort _version;

    /// <summary>Reads the client hello and answers it; true when the connection continues with requests.</summary>
    private async Task<bool> HelloAsync(CancellationToken connectionClosed)
    {
        var options = _server.Options;
        using var timeout = new CancellationTokenSource(options.HelloTimeout, _server.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(connectionClosed, timeout.Token);
        byte[] bytes;
        try
        {
            var received = await ReadExactAsync(_input, ReplicaProtocol.ClientHelloSize, linked.Token);
            if (received is null)
            {
                ReplicaLog.TransportEnded(_logger, _connectionId, "client closed before its hello");
                return false;
            }

            bytes = received;
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !connectionClosed.IsCancellationRequested)
        {
            ReplicaLog.HelloTimedOut(_logger, _connectionId, options.HelloTimeout);
            return false;
        }

        var hello = ClientHello.TryParse(bytes, out var error);
        if (hello is not { } client)
        {
            ReplicaLog.MalformedFrame(_logger, _connectionId, error!);
            return false;
        }

        var low = Math.Max(client.MinVersion, options.MinProtocolVersion);
        var high = Math.Min(client.MaxVersion, options.MaxProtocolVersion);
        if (client.MinVersion == 0 || client.MaxVersion < client.MinVersion || low > high)
        {
            var reason = $"no common protocol version: client speaks {client.MinVersion}..{client.MaxVersion}, server speaks {options.MinProtocolVersion}..{options.MaxProtocolVersion}";
            ReplicaLog.HelloRefused(_logger, _connectionId, client.NodeId, reason);
            await WriteHelloAsync(new ServerHello(false, 0, _server.NodeId, (uint)options.MaxPayload, 0), reason, connectionClosed);
            return false;
        }

        _version = high;
        await WriteHelloAsync(new ServerHello(true, high, _server.NodeId, (uint)options.MaxPayload, 0), null, connectionClosed);
        ReplicaLog.HelloAccepted(_logger, _connectionId, client.NodeId, high);
        return true;
    }

    private async Task WriteHelloAsync(ServerHello hello, string? reason, CancellationToken cancellationToken)
    {
        var reasonBytes = reason is null ? [] : ReplicaProtocol.Utf8.GetBytes(reason);
        if (reasonBytes.Length > ReplicaProtocol.MaxMessageLength)
        {
            Array.Resize(ref reasonBytes, ReplicaProtocol.MaxMessageLength);
        }

        var frame = new byte[ReplicaProtocol.ServerHelloSize + reasonBytes.Length];
        (hello with { ReasonLength = (ushort)reasonBytes.Length }).Write(frame);
        reasonBytes.CopyTo(frame, ReplicaProtocol.ServerHelloSize);
        await _output.WriteAsync(frame, cancellationToken);
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes; null when the input ended first.</summary>
    internal static async ValueTask<byte[]?> ReadExactAsync(PipeReader input, int count, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (buffer.Length >= count)
            {
                var bytes = buffer.Slice(0, count).ToArray();
                input.AdvanceTo(buffer.GetPosition(count));
                return bytes;
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                input.AdvanceTo(buffer.End);
                return null;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
