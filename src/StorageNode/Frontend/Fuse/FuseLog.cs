using Microsoft.Extensions.Logging;

namespace Slab.Frontend.Fuse;

internal static partial class FuseLog
{
    [LoggerMessage(1, LogLevel.Error, "FUSE server at {MountPoint}: reading a request failed: {Reason}; this reader stops")]
    public static partial void ReadFailed(ILogger logger, string mountPoint, string reason);

    [LoggerMessage(2, LogLevel.Error, "FUSE server at {MountPoint}: a reader failed")]
    public static partial void ReaderFailed(ILogger logger, string mountPoint, Exception exception);

    [LoggerMessage(3, LogLevel.Warning, "FUSE server at {MountPoint}: a reply could not be written: {Reason}")]
    public static partial void ReplyFailed(ILogger logger, string mountPoint, string reason);

    [LoggerMessage(4, LogLevel.Error, "FUSE server at {MountPoint}: a request failed unexpectedly (answered EIO)")]
    public static partial void RequestFailed(ILogger logger, string mountPoint, Exception exception);

    [LoggerMessage(5, LogLevel.Warning, "FUSE server at {MountPoint}: readers or requests still running {Timeout} after the unmount; the device stays open")]
    public static partial void StopTimedOut(ILogger logger, string mountPoint, TimeSpan timeout);
}
