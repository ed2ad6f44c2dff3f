using Microsoft.Extensions.Logging;

namespace Slab.Host;

/// <summary>Log messages of the host attach layer.</summary>
internal static partial class HostLog
{
    [LoggerMessage(1, LogLevel.Information, "Attached volume {Volume} as {Device} ({Method}, {SizeBytes} bytes, direct I/O {DirectIo})")]
    public static partial void Attached(ILogger logger, string volume, string device, string method, long sizeBytes, bool directIo);

    [LoggerMessage(2, LogLevel.Warning, "Attaching volume {Volume} failed; undoing what was made")]
    public static partial void AttachFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(3, LogLevel.Information, "Resized volume {Volume} device {Device} from {OldSizeBytes} to {NewSizeBytes} bytes")]
    public static partial void Resized(ILogger logger, string volume, string device, long oldSizeBytes, long newSizeBytes);

    [LoggerMessage(4, LogLevel.Information, "Detached volume {Volume} ({Device})")]
    public static partial void Detached(ILogger logger, string volume, string device);

    [LoggerMessage(5, LogLevel.Warning, "Recovering leftover attachment {Volume}: {Action}")]
    public static partial void StaleAction(ILogger logger, string volume, string action);

    [LoggerMessage(6, LogLevel.Error, "Could not fully remove leftover attachment {Volume}; kept for the next try")]
    public static partial void StaleFailed(ILogger logger, string volume, Exception exception);

    [LoggerMessage(7, LogLevel.Warning, "Undo step for volume {Volume} failed: {Step}")]
    public static partial void UndoStepFailed(ILogger logger, string volume, string step, Exception exception);

    [LoggerMessage(8, LogLevel.Warning, "nbdfuse for volume {Volume} (pid {Pid}) did not exit in {Timeout}; killing it")]
    public static partial void NbdfuseKilled(ILogger logger, string volume, int pid, TimeSpan timeout);

    [LoggerMessage(9, LogLevel.Warning, "Loop device {Device} of volume {Volume} has no direct I/O; running buffered")]
    public static partial void NoDirectIo(ILogger logger, string volume, string device);

    [LoggerMessage(10, LogLevel.Information, "Host attach method: {Method} ({Reason})")]
    public static partial void MethodChosen(ILogger logger, string method, string reason);

    [LoggerMessage(11, LogLevel.Information, "{Operation} {Device}: {Detail}")]
    public static partial void Filesystem(ILogger logger, string operation, string device, string detail);

    [LoggerMessage(12, LogLevel.Information, "Attachment of volume {Volume} outlived the previous slabd and is kept: {Device}, mounted at [{MountPaths}]")]
    public static partial void Kept(ILogger logger, string volume, string device, string mountPaths);

    [LoggerMessage(13, LogLevel.Warning, "Relay {Pid} of volume {Volume} did not exit within {Timeout} after nbdfuse; killed")]
    public static partial void RelayKilled(ILogger logger, string volume, int pid, TimeSpan timeout);
}
