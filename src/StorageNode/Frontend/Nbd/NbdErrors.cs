using Slab.Block;

namespace Slab.Frontend.Nbd;

/// <summary>Maps typed block-layer failures to NBD error values.</summary>
internal static class NbdErrors
{
    /// <summary>The NBD errno for <paramref name="error"/>; never <see cref="NbdErrno.None"/>.</summary>
    public static NbdErrno ToErrno(BlockError error) => error switch
    {
        BlockError.OutOfRange or BlockError.InvalidArgument => NbdErrno.EINVAL,
        BlockError.ReadOnly => NbdErrno.EPERM,
        BlockError.NoSpace => NbdErrno.ENOSPC,
        BlockError.NotSupported => NbdErrno.ENOTSUP,
        BlockError.Closed => NbdErrno.ESHUTDOWN,
        // A fenced controller must not be retried against: the client sees an I/O error.
        BlockError.Fenced => NbdErrno.EIO,
        _ => NbdErrno.EIO,
    };
}
