using Slab.Block;

using Slab.Common;

namespace Slab.Frontend.Nbd;

/// <summary>
/// One pre-allocated request of a session: the parsed header and its payload buffer; the life cycle
/// (thread pool, reply lock, return to the pool) is <see cref="PooledRequestSlot{TSelf}"/>'s.
/// </summary>
internal sealed class NbdRequestSlot(NbdSession session, BoundedSlotPool<NbdRequestSlot> pool)
    : PooledRequestSlot<NbdRequestSlot>(pool)
{
    /// <summary>Extents asked of the target per block-status request (bounds the reply to 8 KiB).</summary>
    public const int MaxExtentsPerReply = 1024;

    private BlockExtent[]? _extents;

    public NbdCommand Command { get; set; }

    public NbdCommandFlags Flags { get; set; }

    public ulong Cookie { get; set; }

    /// <summary>Byte offset as sent (unsigned; validated against the export size before use).</summary>
    public ulong Offset { get; set; }

    /// <summary>Length in bytes as sent.</summary>
    public uint Length { get; set; }

    /// <summary>Extents of a block-status reply; <see cref="ExtentCount"/> of them are valid.</summary>
    public BlockExtent[] Extents => _extents ??= new BlockExtent[MaxExtentsPerReply];

    public int ExtentCount { get; set; }

    protected override ValueTask ProcessAsync() => session.ProcessRequestAsync(this);
}
