namespace Slab.Block;

// The seam every data layer shares: NBD serves any IBlockTarget; a volume controller is a block
// target over replica targets; a local replica file is a block target. Tests put a
// MemoryBlockTarget anywhere.

/// <summary>Flags for <see cref="IBlockTarget.WriteAsync"/>.</summary>
[Flags]
public enum BlockWriteFlags
{
    None = 0,
    /// <summary>The write is durable (on stable storage) before the call completes.</summary>
    ForceUnitAccess = 1,
}

/// <summary>Flags for <see cref="IBlockTarget.WriteZeroesAsync"/>.</summary>
[Flags]
public enum WriteZeroesFlags
{
    None = 0,
    ForceUnitAccess = 1,
    /// <summary>The range must stay allocated (no hole may be punched).</summary>
    NoHole = 2,
}

/// <summary>Extent state, bit-compatible with NBD's <c>base:allocation</c> context.</summary>
[Flags]
public enum ExtentFlags : uint
{
    /// <summary>Allocated data.</summary>
    Data = 0,
    /// <summary>Unallocated (NBD_STATE_HOLE).</summary>
    Hole = 1,
    /// <summary>Reads as zeroes (NBD_STATE_ZERO).</summary>
    Zero = 2,
}

/// <summary>One run of bytes sharing a state; <see cref="Length"/> is in bytes.</summary>
public readonly record struct BlockExtent(long Length, ExtentFlags Flags);

/// <summary>What a target can do; the NBD frontend derives its transmission flags from it.</summary>
[Flags]
public enum BlockTargetFeatures
{
    None = 0,
    ReadOnly = 1,
    Flush = 2,
    ForceUnitAccess = 4,
    Trim = 8,
    WriteZeroes = 16,
    BlockStatus = 32,
    /// <summary>
    /// Several connections may write concurrently, and a flush on any of them makes durable every
    /// write completed on any of them before the flush was issued.
    /// </summary>
    MultiConnection = 64,
}

/// <summary>
/// Block-size constraints in bytes: every request's offset and length should be multiples of
/// <see cref="Minimum"/>, <see cref="Preferred"/> is the efficient size, and one request moves at
/// most <see cref="Maximum"/> bytes. All are powers of two.
/// </summary>
public readonly record struct BlockGeometry(int Minimum, int Preferred, int Maximum)
{
    /// <summary>Accepts any alignment; 4 KiB preferred; 32 MiB at most per request.</summary>
    public static BlockGeometry Default { get; } = new(1, 4096, 32 * 1024 * 1024);
}

/// <summary>
/// A linear array of bytes with block-device semantics.
/// </summary>
/// <remarks>
/// Contracts:
/// <list type="bullet">
/// <item>Offsets and lengths are bytes. A request must lie inside [0, <see cref="Size"/>); otherwise
/// the target throws <see cref="BlockTargetException"/> with <see cref="BlockError.OutOfRange"/>.</item>
/// <item>All members are safe to call concurrently. Concurrent overlapping writes land in an
/// unspecified order; non-overlapping writes never disturb each other, whatever their alignment.</item>
/// <item>A completed write is visible to every later read. It is durable once a later
/// <see cref="FlushAsync"/> completes, or at completion when written with ForceUnitAccess.</item>
/// <item>Buffers from <see cref="Buffers.AlignedBufferPool"/> take the fast path; any other memory
/// works but may be bounced through an aligned copy.</item>
/// <item>Failures are <see cref="BlockTargetException"/>s; nothing else escapes except
/// <see cref="OperationCanceledException"/>.</item>
/// </list>
/// </remarks>
public interface IBlockTarget
{
    /// <summary>Current size in bytes; may grow while the target is in use.</summary>
    long Size { get; }

    BlockTargetFeatures Features { get; }

    BlockGeometry Geometry { get; }

    ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken);

    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken);

    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>Discards the range: it may read back as anything until written again (we read zeroes).</summary>
    ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken);

    ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken);

    /// <summary>
    /// Describes the range starting at <paramref name="offset"/> (at most <paramref name="length"/>
    /// bytes) as consecutive extents written to <paramref name="destination"/>; returns how many were
    /// written (at least one when length &gt; 0). The extents may cover less than the range.
    /// </summary>
    ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken);
}

/// <summary>
/// One replica of a volume as its volume controller uses it: a block target that carries the
/// controller's epoch on every request and can grow. A replica file on this node
/// (<c>Volumes.LocalReplicaTarget</c>) and a replica on another node
/// (<c>Replication.RemoteReplicaTarget</c>) are both this, so the controller treats them alike and
/// tests put memory replicas with injected faults in their place.
/// </summary>
/// <remarks>
/// A request whose epoch the replica refuses (a newer controller owns the volume) fails with
/// <see cref="BlockError.Fenced"/>; any other failure means the replica could not do it.
/// </remarks>
public interface IReplicaTarget : IBlockTarget, IDisposable
{
    /// <summary>
    /// The epoch every request carries from the next request on. Set by the controller when the
    /// volume's epoch moves; requests already sent keep the value they read.
    /// </summary>
    long Epoch { get; set; }

    /// <summary>Extends the replica (or this side's view of it) to <paramref name="newSizeBytes"/>; never shrinks.</summary>
    void Grow(long newSizeBytes);
}

/// <summary>
/// A block target handed out by name. Disposing the lease tells the owner the user is done; the
/// target must not be used after that.
/// </summary>
public interface IBlockTargetLease : IAsyncDisposable
{
    IBlockTarget Target { get; }
}

/// <summary>An export as listed to NBD clients.</summary>
public readonly record struct ExportDescription(string Name, string Description);

/// <summary>
/// Resolves export names to block targets. Implemented by the volume layer; consumed by frontends.
/// </summary>
public interface IExportCatalog
{
    /// <summary>Names that a client may open (volumes and their snapshots).</summary>
    IReadOnlyList<ExportDescription> ListExports();

    /// <summary>
    /// Opens an export; returns null when no such export exists. A snapshot "VOL@SNAP" opens
    /// read-only.
    /// </summary>
    ValueTask<IBlockTargetLease?> OpenExportAsync(string name, CancellationToken cancellationToken);
}
