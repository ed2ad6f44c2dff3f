namespace Slab.Block;

/// <summary>Why a block operation failed; frontends map it to NBD errno or gRPC status.</summary>
public enum BlockError
{
    /// <summary>The request lies (partly) outside the target.</summary>
    OutOfRange,
    /// <summary>The request is malformed (bad flags, bad length).</summary>
    InvalidArgument,
    /// <summary>The target is read-only (a snapshot export).</summary>
    ReadOnly,
    /// <summary>The pool or drive has no space for the data.</summary>
    NoSpace,
    /// <summary>The target does not support the operation.</summary>
    NotSupported,
    /// <summary>The backing storage failed.</summary>
    IOError,
    /// <summary>The target was closed (volume deleted, daemon shutting down).</summary>
    Closed,
    /// <summary>
    /// The request carried an epoch older than the replica's: another controller owns the volume
    /// now. Never retried; the controller that sees it must stop serving the volume.
    /// </summary>
    Fenced,
}

/// <summary>A typed block-layer failure. Classify by <see cref="Error"/>, never by message.</summary>
public sealed class BlockTargetException : Exception
{
    public BlockTargetException(BlockError error, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
    }

    public BlockError Error { get; }

    /// <summary>Throws <see cref="BlockError.OutOfRange"/> unless [offset, offset+length) lies in [0, size).</summary>
    public static void ThrowIfOutOfRange(long offset, long length, long size)
    {
        if (offset < 0 || length < 0 || offset > size || length > size - offset)
        {
            throw new BlockTargetException(
                BlockError.OutOfRange,
                $"request [{offset}, +{length}) lies outside the target of {size} bytes");
        }
    }
}

/// <summary>The Linux errno a frontend reports for a <see cref="BlockError"/> (NBD's error values are the same numbers).</summary>
public static class BlockErrno
{
    public const int EPERM = 1;
    public const int EIO = 5;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int EOPNOTSUPP = 95;
    public const int ESHUTDOWN = 108;

    /// <summary>The errno for <paramref name="error"/>; never 0. A fenced controller gets EIO: it must not be retried against.</summary>
    public static int Of(BlockError error) => error switch
    {
        BlockError.OutOfRange or BlockError.InvalidArgument => EINVAL,
        BlockError.ReadOnly => EPERM,
        BlockError.NoSpace => ENOSPC,
        BlockError.NotSupported => EOPNOTSUPP,
        BlockError.Closed => ESHUTDOWN,
        _ => EIO,
    };
}
