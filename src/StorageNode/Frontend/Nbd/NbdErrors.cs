using Slab.Block;

namespace Slab.Frontend.Nbd;

/// <summary>Maps typed block-layer failures to NBD error values.</summary>
internal static class NbdErrors
{
    /// <summary>The NBD errno for <paramref name="error"/>; never <see cref="NbdErrno.None"/>.</summary>
    public static NbdErrno ToErrno(BlockError error) => (NbdErrno)BlockErrno.Of(error);
}
