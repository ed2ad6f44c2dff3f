using Slab.Block;

namespace Slab.Replication;

// The client side of the hello exchange (once per connection).
internal sealed partial class ReplicaClientConnection
{
    private async Task HelloAsync(Guid localNodeId, CancellationToken cancellationToken)
    {
        var frame = new byte[ReplicaProtocol.ClientHelloSize];
        new ClientHello(_options.MinProtocolVersion, _options.MaxProtocolVersion, localNodeId).Write(frame);
        await _output.WriteAsync(frame, cancellationToken);

        var bytes = await ReplicaServerConnection.ReadExactAsync(_input, ReplicaProtocol.ServerHelloSize, cancellationToken)
            ?? throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName}: connection closed during the hello");
        var hello = ServerHello.TryParse(bytes, out var error)
            ?? throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName}: {error}");
        var reason = string.Empty;
        if (hello.ReasonLength > 0)
        {
            var reasonBytes = await ReplicaServerConnection.ReadExactAsync(_input, hello.ReasonLength, cancellationToken)
                ?? throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName}: connection closed during the hello");
            reason = ReplicaProtocol.Utf8.GetString(reasonBytes);
        }

        if (!hello.Accepted)
        {
            throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName} refused the connection: {reason}");
        }

        if (hello.Version < _options.MinProtocolVersion || hello.Version > _options.MaxProtocolVersion)
        {
            throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName} chose protocol v{hello.Version}, outside {_options.MinProtocolVersion}..{_options.MaxProtocolVersion}");
        }

        if (hello.MaxPayload < 4096)
        {
            throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName} announced a maximum payload of {hello.MaxPayload} bytes (below 4096)");
        }

        Version = hello.Version;
        PeerNodeId = hello.NodeId;
        MaxPayload = (int)Math.Min((uint)_options.MaxPayload, hello.MaxPayload);
    }
}
