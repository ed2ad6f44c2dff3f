namespace Slab.Block;

/// <summary>
/// A sparse in-memory block target for tests and benchmarks. Memory is held in 64 KiB chunks that
/// exist only once written with non-zero data, so block status reports real holes.
/// </summary>
/// <remarks>Thread-safe (one lock; this is not a performance target beyond benchmarks of callers).</remarks>
public sealed class MemoryBlockTarget : IBlockTarget
{
    /// <summary>Chunk size in bytes.</summary>
    public const int ChunkSize = 64 * 1024;

    private readonly Dictionary<long, byte[]> _chunks = [];
    private readonly Lock _lock = new();
    private long _size;

    public MemoryBlockTarget(long size, bool readOnly = false, BlockGeometry? geometry = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        _size = size;
        Geometry = geometry ?? BlockGeometry.Default;
        Features = BlockTargetFeatures.Flush | BlockTargetFeatures.ForceUnitAccess | BlockTargetFeatures.Trim
            | BlockTargetFeatures.WriteZeroes | BlockTargetFeatures.BlockStatus | BlockTargetFeatures.MultiConnection
            | (readOnly ? BlockTargetFeatures.ReadOnly : BlockTargetFeatures.None);
    }

    public long Size => Volatile.Read(ref _size);

    public BlockTargetFeatures Features { get; }

    public BlockGeometry Geometry { get; }

    /// <summary>Number of flushes seen (for tests).</summary>
    public int FlushCount { get; private set; }

    /// <summary>Bytes held in allocated chunks.</summary>
    public long AllocatedBytes
    {
        get
        {
            lock (_lock)
            {
                return (long)_chunks.Count * ChunkSize;
            }
        }
    }

    public void Resize(long newSize)
    {
        lock (_lock)
        {
            if (newSize < _size)
            {
                ZeroRangeLocked(newSize, _size - newSize, punch: true);
            }

            _size = newSize;
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            BlockTargetException.ThrowIfOutOfRange(offset, destination.Length, _size);
            var span = destination.Span;
            while (!span.IsEmpty)
            {
                var index = offset / ChunkSize;
                var within = (int)(offset % ChunkSize);
                var n = Math.Min(span.Length, ChunkSize - within);
                if (_chunks.TryGetValue(index, out var chunk))
                {
                    chunk.AsSpan(within, n).CopyTo(span);
                }
                else
                {
                    span[..n].Clear();
                }

                span = span[n..];
                offset += n;
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            ThrowIfReadOnly();
            BlockTargetException.ThrowIfOutOfRange(offset, source.Length, _size);
            var span = source.Span;
            while (!span.IsEmpty)
            {
                var index = offset / ChunkSize;
                var within = (int)(offset % ChunkSize);
                var n = Math.Min(span.Length, ChunkSize - within);
                if (!_chunks.TryGetValue(index, out var chunk))
                {
                    chunk = new byte[ChunkSize];
                    _chunks[index] = chunk;
                }

                span[..n].CopyTo(chunk.AsSpan(within));
                span = span[n..];
                offset += n;
            }
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            FlushCount++;
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            ThrowIfReadOnly();
            BlockTargetException.ThrowIfOutOfRange(offset, length, _size);
            ZeroRangeLocked(offset, length, punch: true);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            ThrowIfReadOnly();
            BlockTargetException.ThrowIfOutOfRange(offset, length, _size);
            ZeroRangeLocked(offset, length, punch: (flags & WriteZeroesFlags.NoHole) == 0);
        }

        return ValueTask.CompletedTask;
    }

    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            BlockTargetException.ThrowIfOutOfRange(offset, length, _size);
            var extents = destination.Span;
            var count = 0;
            var end = offset + length;
            while (offset < end && count < extents.Length)
            {
                var index = offset / ChunkSize;
                var allocated = _chunks.ContainsKey(index);
                var runEnd = Math.Min(end, (index + 1) * ChunkSize);
                while (runEnd < end && _chunks.ContainsKey(runEnd / ChunkSize) == allocated)
                {
                    runEnd = Math.Min(end, runEnd + ChunkSize);
                }

                var flags = allocated ? ExtentFlags.Data : ExtentFlags.Hole | ExtentFlags.Zero;
                if (count > 0 && extents[count - 1].Flags == flags)
                {
                    extents[count - 1] = new BlockExtent(extents[count - 1].Length + (runEnd - offset), flags);
                }
                else
                {
                    extents[count++] = new BlockExtent(runEnd - offset, flags);
                }

                offset = runEnd;
            }

            return ValueTask.FromResult(count);
        }
    }

    private void ZeroRangeLocked(long offset, long length, bool punch)
    {
        var end = offset + length;
        while (offset < end)
        {
            var index = offset / ChunkSize;
            var within = (int)(offset % ChunkSize);
            var n = (int)Math.Min(end - offset, ChunkSize - within);
            if (_chunks.TryGetValue(index, out var chunk))
            {
                if (punch && n == ChunkSize)
                {
                    _chunks.Remove(index);
                }
                else
                {
                    chunk.AsSpan(within, n).Clear();
                }
            }
            else if (!punch)
            {
                _chunks[index] = new byte[ChunkSize];
            }

            offset += n;
        }
    }

    private void ThrowIfReadOnly()
    {
        if ((Features & BlockTargetFeatures.ReadOnly) != 0)
        {
            throw new BlockTargetException(BlockError.ReadOnly, "the target is read-only");
        }
    }
}
