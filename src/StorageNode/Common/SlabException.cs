namespace Slab.Common;

/// <summary>What kind of failure a control-plane operation met; the API maps it to a gRPC status.</summary>
public enum SlabErrorCode
{
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// <summary>The object's state forbids the operation (attached, mounted, ...).</summary>
    FailedPrecondition,
    /// <summary>Pool full, overcommit limit reached, too many snapshots.</summary>
    ResourceExhausted,
    /// <summary>The daemon is starting or stopping.</summary>
    Unavailable,
    /// <summary>An I/O failure or a bug; the message says what failed.</summary>
    Internal,
}

/// <summary>
/// A control-plane failure with a message a person can act on. Classify by <see cref="Code"/>,
/// never by message text.
/// </summary>
public sealed class SlabException(SlabErrorCode code, string message, Exception? innerException = null)
    : Exception(message, innerException)
{
    public SlabErrorCode Code { get; } = code;
}
