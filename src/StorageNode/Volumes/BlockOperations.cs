using Slab.Block;

namespace Slab.Volumes;

/// <summary>
/// One block operation as a value, so the controller's fan-out and the local replica's gate run any
/// of them through one generic path without a closure per request (a struct type argument makes the
/// JIT specialise the path per operation).
/// </summary>
internal interface IBlockOperation
{
    /// <summary>Changes data (writes wait for the snapshot gate and fan out to every writable replica).</summary>
    bool IsWrite { get; }

    /// <summary>The byte range the operation changes (0, 0 for reads and flushes).</summary>
    long Offset { get; }

    long Length { get; }

    ValueTask Run(IBlockTarget target, CancellationToken cancellationToken);
}

internal readonly struct WriteOperation(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags) : IBlockOperation
{
    public long Offset => offset;

    public long Length => source.Length;

    public bool IsWrite => true;

    public ValueTask Run(IBlockTarget target, CancellationToken cancellationToken) => target.WriteAsync(offset, source, flags, cancellationToken);
}

internal readonly struct TrimOperation(long offset, long length) : IBlockOperation
{
    public long Offset => offset;

    public long Length => length;

    public bool IsWrite => true;

    public ValueTask Run(IBlockTarget target, CancellationToken cancellationToken) => target.TrimAsync(offset, length, cancellationToken);
}

internal readonly struct WriteZeroesOperation(long offset, long length, WriteZeroesFlags flags) : IBlockOperation
{
    public long Offset => offset;

    public long Length => length;

    public bool IsWrite => true;

    public ValueTask Run(IBlockTarget target, CancellationToken cancellationToken) => target.WriteZeroesAsync(offset, length, flags, cancellationToken);
}

internal readonly struct FlushOperation : IBlockOperation
{
    public long Offset => 0;

    public long Length => 0;

    public bool IsWrite => false;

    public ValueTask Run(IBlockTarget target, CancellationToken cancellationToken) => target.FlushAsync(cancellationToken);
}

internal readonly struct ReadOperation(long offset, Memory<byte> destination) : IBlockOperation
{
    public long Offset => 0;

    public long Length => 0;

    public bool IsWrite => false;

    public ValueTask Run(IBlockTarget target, CancellationToken cancellationToken) => target.ReadAsync(offset, destination, cancellationToken);
}
