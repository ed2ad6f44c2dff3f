using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Replication;

/// <summary>Source-generated log messages of the replication layer (event ids 5000-5099).</summary>
internal static partial class ReplicaLog
{
    [LoggerMessage(5000, LogLevel.Debug, "Replication connection {ConnectionId} opened")]
    public static partial void Connected(ILogger logger, string connectionId);

    [LoggerMessage(5001, LogLevel.Debug, "Replication connection {ConnectionId} closed")]
    public static partial void Disconnected(ILogger logger, string connectionId);

    [LoggerMessage(5002, LogLevel.Information, "Replication connection {ConnectionId}: node {PeerNodeId} connected with protocol v{Version}")]
    public static partial void HelloAccepted(ILogger logger, string connectionId, Guid peerNodeId, ushort version);

    [LoggerMessage(5003, LogLevel.Warning, "Replication connection {ConnectionId}: refused node {PeerNodeId}: {Reason}")]
    public static partial void HelloRefused(ILogger logger, string connectionId, Guid peerNodeId, string reason);

    [LoggerMessage(5004, LogLevel.Warning, "Replication connection {ConnectionId}: malformed frame ({Reason}); closing the connection")]
    public static partial void MalformedFrame(ILogger logger, string connectionId, string reason);

    [LoggerMessage(5005, LogLevel.Warning, "Replication connection {ConnectionId}: hello not received within {Timeout}; closing")]
    public static partial void HelloTimedOut(ILogger logger, string connectionId, TimeSpan timeout);

    [LoggerMessage(5006, LogLevel.Debug, "Replication connection {ConnectionId}: transport ended ({Reason})")]
    public static partial void TransportEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(5007, LogLevel.Error, "Replication connection {ConnectionId} failed unexpectedly")]
    public static partial void ConnectionCrashed(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(5008, LogLevel.Warning, "Replication connection {ConnectionId}: request for volume {VolumeId} with epoch {Epoch} fenced (replica epoch {CurrentEpoch})")]
    public static partial void StaleEpoch(ILogger logger, string connectionId, Guid volumeId, ulong epoch, long currentEpoch);

    [LoggerMessage(5009, LogLevel.Warning, "Replication connection {ConnectionId}: epoch {Epoch} for volume {VolumeId} not accepted (replica epoch {CurrentEpoch})")]
    public static partial void EpochRejected(ILogger logger, string connectionId, Guid volumeId, ulong epoch, long currentEpoch);

    [LoggerMessage(5010, LogLevel.Debug, "Replication connection {ConnectionId}: {Opcode} at {Offset} (+{Length}) failed with {Error}")]
    public static partial void RequestFailed(ILogger logger, string connectionId, ReplicaOpcode opcode, ulong offset, uint length, BlockError error);

    [LoggerMessage(5011, LogLevel.Error, "Replication connection {ConnectionId}: {Opcode} at {Offset} (+{Length}) threw unexpectedly; answering IOError")]
    public static partial void RequestCrashed(ILogger logger, string connectionId, ReplicaOpcode opcode, ulong offset, uint length, Exception exception);

    [LoggerMessage(5012, LogLevel.Debug, "Replication connection {ConnectionId}: could not send a response; the connection is gone")]
    public static partial void ResponseFailed(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(5013, LogLevel.Debug, "Replication connection {ConnectionId}: no replica of volume {VolumeId} on this node")]
    public static partial void UnknownVolume(ILogger logger, string connectionId, Guid volumeId);

    [LoggerMessage(5020, LogLevel.Information, "Replica node {Node}: connected (protocol v{Version}, node id {PeerNodeId})")]
    public static partial void ClientConnected(ILogger logger, string node, ushort version, Guid peerNodeId);

    [LoggerMessage(5021, LogLevel.Warning, "Replica node {Node}: connection lost ({Reason})")]
    public static partial void ClientConnectionLost(ILogger logger, string node, string reason);

    [LoggerMessage(5022, LogLevel.Warning, "Replica node {Node}: connect failed ({Reason}); next attempt in {Backoff}")]
    public static partial void ClientConnectFailed(ILogger logger, string node, string reason, TimeSpan backoff);

    [LoggerMessage(5023, LogLevel.Warning, "Replica node {Node}: request timed out after {Timeout}; closing the connection")]
    public static partial void ClientRequestTimedOut(ILogger logger, string node, TimeSpan timeout);
}
