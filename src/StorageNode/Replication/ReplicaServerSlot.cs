using Slab.Block;

using Slab.Common;

namespace Slab.Replication;

/// <summary>
/// One pre-allocated request of a server connection: the parsed header and its scratch space; the
/// life cycle (thread pool, response lock, return to the pool) is <see cref="PooledRequestSlot{TSelf}"/>'s.
/// </summary>
internal sealed class ReplicaServerSlot(ReplicaServerConnection connection, BoundedSlotPool<ReplicaServerSlot> pool)
    : PooledRequestSlot<ReplicaServerSlot>(pool)
{
    private BlockExtent[]? _extents;
    private byte[]? _scratch;

    public RequestHeader Header { get; set; }

    /// <summary>Extents asked of the target (at most <see cref="ReplicaProtocol.MaxExtentsPerResponse"/>).</summary>
    public BlockExtent[] Extents => _extents ??= new BlockExtent[ReplicaProtocol.MaxExtentsPerResponse];

    /// <summary>Encoded response data that is not a read buffer: extents, ping info, error messages.</summary>
    public byte[] Scratch => _scratch ??= new byte[ReplicaProtocol.MaxExtentsPerResponse * ReplicaProtocol.ExtentSize];

    protected override ValueTask ProcessAsync() => connection.ProcessAsync(this);
}
