using Slab.Block;

namespace Slab.Volumes;

/// <summary>
/// The private export catalog behind the attach socket (<c>RUN/attach.sock</c>, root-only), which host
/// attachments connect to. Its exports advertise a fixed ceiling size instead of the volume's size:
/// an NBD client learns the size once, at handshake, so an attachment sized to the ceiling can grow in
/// place. The block device on top is limited to the volume's real size (the loop device's size limit)
/// and raised when the volume grows.
/// </summary>
public sealed class AttachExportCatalog(VolumeManager volumes, VolumeManagerOptions options) : IExportCatalog
{
    /// <summary>Nothing is listed: this catalog is for slabd's own attachments.</summary>
    public IReadOnlyList<ExportDescription> ListExports() => [];

    public ValueTask<IBlockTargetLease?> OpenExportAsync(string name, CancellationToken cancellationToken)
    {
        var volume = volumes.FindAttachable(name);
        if (volume is null)
        {
            return ValueTask.FromResult<IBlockTargetLease?>(null);
        }

        var lease = volumes.OpenVolumeLease(volume);
        return ValueTask.FromResult<IBlockTargetLease?>(new CeilingLease(lease, new CeilingBlockTarget(lease.Target, options.AttachCeilingBytes)));
    }

    private sealed class CeilingLease(IBlockTargetLease inner, IBlockTarget target) : IBlockTargetLease
    {
        public IBlockTarget Target { get; } = target;

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}

/// <summary>
/// Presents <paramref name="inner"/> with a larger fixed <see cref="Size"/>. Past the inner target's
/// current size, reads return zeroes and block status reports a hole (page-cache readahead on the
/// attachment may touch it); writes, trims and write-zeroes there fail with OutOfRange.
/// </summary>
public sealed class CeilingBlockTarget(IBlockTarget inner, long ceilingBytes) : IBlockTarget
{
    public long Size { get; } = ceilingBytes;

    public BlockTargetFeatures Features => inner.Features;

    public BlockGeometry Geometry => inner.Geometry;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        BlockTargetException.ThrowIfOutOfRange(offset, destination.Length, Size);
        var innerSize = inner.Size;
        if (offset + destination.Length <= innerSize)
        {
            return inner.ReadAsync(offset, destination, cancellationToken);
        }

        var inside = (int)Math.Clamp(innerSize - offset, 0, destination.Length);
        destination.Span[inside..].Clear();
        return inside == 0 ? ValueTask.CompletedTask : inner.ReadAsync(offset, destination[..inside], cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
        => inner.WriteAsync(offset, source, flags, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
        => inner.TrimAsync(offset, length, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
        => inner.WriteZeroesAsync(offset, length, flags, cancellationToken);

    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        BlockTargetException.ThrowIfOutOfRange(offset, length, Size);
        var innerSize = inner.Size;
        if (offset < innerSize)
        {
            return inner.GetExtentsAsync(offset, Math.Min(length, innerSize - offset), destination, cancellationToken);
        }

        if (destination.Length == 0 || length == 0)
        {
            return ValueTask.FromResult(0);
        }

        destination.Span[0] = new BlockExtent(length, ExtentFlags.Hole | ExtentFlags.Zero);
        return ValueTask.FromResult(1);
    }
}
