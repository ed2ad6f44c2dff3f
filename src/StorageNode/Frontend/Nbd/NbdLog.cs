using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Frontend.Nbd;

/// <summary>Source-generated log messages of the NBD frontend (event ids 4000-4099).</summary>
internal static partial class NbdLog
{
    [LoggerMessage(4000, LogLevel.Debug, "NBD connection {ConnectionId} opened")]
    public static partial void Connected(ILogger logger, string connectionId);

    [LoggerMessage(4001, LogLevel.Debug, "NBD connection {ConnectionId} closed")]
    public static partial void Disconnected(ILogger logger, string connectionId);

    [LoggerMessage(4002, LogLevel.Warning, "NBD connection {ConnectionId}: client flags 0x{ClientFlags:x8} refused ({Reason}); closing")]
    public static partial void ClientFlagsRefused(ILogger logger, string connectionId, uint clientFlags, string reason);

    [LoggerMessage(4003, LogLevel.Warning, "NBD connection {ConnectionId}: handshake not finished within {Timeout}; closing")]
    public static partial void HandshakeTimedOut(ILogger logger, string connectionId, TimeSpan timeout);

    [LoggerMessage(4004, LogLevel.Warning, "NBD connection {ConnectionId}: bad option magic 0x{Magic:x16}; closing")]
    public static partial void BadOptionMagic(ILogger logger, string connectionId, ulong magic);

    [LoggerMessage(4005, LogLevel.Debug, "NBD connection {ConnectionId}: option {Option} answered with {Reply}")]
    public static partial void OptionReplied(ILogger logger, string connectionId, uint option, uint reply);

    [LoggerMessage(4006, LogLevel.Information, "NBD connection {ConnectionId}: export '{ExportName}' opened ({Size} bytes, transmission flags 0x{Flags:x4}, structured replies {Structured}, block status {BlockStatus})")]
    public static partial void ExportOpened(ILogger logger, string connectionId, string exportName, long size, ushort flags, bool structured, bool blockStatus);

    [LoggerMessage(4007, LogLevel.Warning, "NBD connection {ConnectionId}: no export named '{ExportName}'")]
    public static partial void UnknownExport(ILogger logger, string connectionId, string exportName);

    [LoggerMessage(4008, LogLevel.Error, "NBD connection {ConnectionId}: opening export '{ExportName}' failed")]
    public static partial void OpenExportFailed(ILogger logger, string connectionId, string exportName, Exception exception);

    [LoggerMessage(4009, LogLevel.Debug, "NBD connection {ConnectionId}: client aborted the handshake")]
    public static partial void HandshakeAborted(ILogger logger, string connectionId);

    [LoggerMessage(4010, LogLevel.Warning, "NBD connection {ConnectionId}: malformed request ({Reason}); closing the connection")]
    public static partial void MalformedRequest(ILogger logger, string connectionId, string reason);

    [LoggerMessage(4011, LogLevel.Debug, "NBD connection {ConnectionId}: client sent NBD_CMD_DISC")]
    public static partial void SoftDisconnect(ILogger logger, string connectionId);

    [LoggerMessage(4012, LogLevel.Debug, "NBD connection {ConnectionId}: request {Command} at {Offset} (+{Length}) failed with {Error}")]
    public static partial void RequestFailed(ILogger logger, string connectionId, ushort command, ulong offset, uint length, BlockError error);

    [LoggerMessage(4013, LogLevel.Error, "NBD connection {ConnectionId}: request {Command} at {Offset} (+{Length}) threw unexpectedly; replying EIO")]
    public static partial void RequestCrashed(ILogger logger, string connectionId, ushort command, ulong offset, uint length, Exception exception);

    [LoggerMessage(4014, LogLevel.Debug, "NBD connection {ConnectionId}: could not send a reply; the connection is gone")]
    public static partial void ReplyFailed(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(4015, LogLevel.Debug, "NBD connection {ConnectionId}: transport ended ({Reason})")]
    public static partial void TransportEnded(ILogger logger, string connectionId, string reason);

    [LoggerMessage(4016, LogLevel.Error, "NBD connection {ConnectionId} failed unexpectedly")]
    public static partial void SessionCrashed(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(4017, LogLevel.Error, "NBD connection {ConnectionId}: releasing the export lease failed")]
    public static partial void LeaseDisposeFailed(ILogger logger, string connectionId, Exception exception);
}
