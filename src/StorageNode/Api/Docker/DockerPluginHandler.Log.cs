using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Api.Docker;

public sealed partial class DockerPluginHandler
{
    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: created volume {Volume} (asked as {DockerName}; parent '{Parent}')")]
    private static partial void LogCreated(ILogger logger, string dockerName, string volume, string parent);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Docker: create of {DockerName}: volume {Volume} exists, left as it is")]
    private static partial void LogCreateExisting(ILogger logger, string dockerName, string volume);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: removed volume {Volume}")]
    private static partial void LogRemoved(ILogger logger, string volume);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: mount {Id} of volume {Volume} ({Count} mount IDs) at {Path}")]
    private static partial void LogMounted(ILogger logger, string volume, string id, int count, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: unmount {Id} of volume {Volume} ({Left} mount IDs left)")]
    private static partial void LogUnmounted(ILogger logger, string volume, string id, int left);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: volume {Volume} mounted again at {Path} after the restart ({Count} mount IDs)")]
    private static partial void LogRestored(ILogger logger, string volume, int count, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Docker: volume {Volume} has {Count} mount IDs but cannot be mounted again after the restart: {Reason}; the next Mount tries again")]
    private static partial void LogRestoreFailed(ILogger logger, string volume, int count, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: volume {Volume} not detached: {Reason}")]
    private static partial void LogDetachSkipped(ILogger logger, string volume, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Docker: {Method} refused ({Code}): {Reason}")]
    private static partial void LogRefused(ILogger logger, string method, SlabErrorCode code, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Docker: Get: {Reason}")]
    private static partial void LogNotFound(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Docker: malformed {Method} request: {Reason}")]
    private static partial void LogBadRequest(ILogger logger, string method, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Docker: unexpected failure in {Method}")]
    private static partial void LogUnexpected(ILogger logger, string method, Exception exception);
}
