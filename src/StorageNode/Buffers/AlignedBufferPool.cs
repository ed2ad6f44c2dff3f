using System.Numerics;

namespace Slab.Buffers;

/// <summary>
/// A pool of <see cref="AlignedBuffer"/>s in power-of-two size classes from 4 KiB to 32 MiB.
/// </summary>
/// <remarks>
/// Thread-safe. Renting never allocates once a class has warmed up. Each class keeps at most
/// <see cref="RetainedBytesPerClass"/> bytes (and at least two buffers); a buffer returned beyond
/// that is freed, so the pool's footprint is bounded whatever the load.
/// </remarks>
public sealed class AlignedBufferPool
{
    /// <summary>Alignment of every buffer in bytes (the page size; O_DIRECT needs the sector size).</summary>
    public const int Alignment = 4096;

    /// <summary>Smallest buffer in bytes.</summary>
    public const int MinimumBufferSize = 4096;

    /// <summary>Largest buffer in bytes (the largest NBD request we accept).</summary>
    public const int MaximumBufferSize = 32 * 1024 * 1024;

    public const int RetainedBytesPerClass = 64 * 1024 * 1024;

    private static readonly int ClassCount = BitOperations.Log2(MaximumBufferSize / MinimumBufferSize) + 1;

    private readonly SizeClass[] _classes;

    public AlignedBufferPool()
    {
        _classes = new SizeClass[ClassCount];
        for (var i = 0; i < ClassCount; i++)
        {
            var size = MinimumBufferSize << i;
            _classes[i] = new SizeClass(size, Math.Max(2, RetainedBytesPerClass / size));
        }
    }

    /// <summary>The process-wide pool.</summary>
    public static AlignedBufferPool Shared { get; } = new();

    /// <summary>Rents a buffer of at least <paramref name="minimumLength"/> bytes (at most 32 MiB).</summary>
    public AlignedBuffer Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minimumLength, MaximumBufferSize);
        var sizeClass = _classes[ClassIndex(minimumLength)];
        return sizeClass.TryPop() ?? new AlignedBuffer(sizeClass.BufferSize, this);
    }

    internal void Return(AlignedBuffer buffer)
    {
        var sizeClass = _classes[ClassIndex(buffer.Capacity)];
        if (!sizeClass.TryPush(buffer))
        {
            buffer.Free();
        }
    }

    private static int ClassIndex(int length)
    {
        if (length <= MinimumBufferSize)
        {
            return 0;
        }

        return BitOperations.Log2((uint)(length - 1) / MinimumBufferSize) + 1;
    }

    private sealed class SizeClass(int bufferSize, int capacity)
    {
        private readonly AlignedBuffer?[] _items = new AlignedBuffer?[capacity];
        private readonly Lock _lock = new();
        private int _count;

        public int BufferSize { get; } = bufferSize;

        public AlignedBuffer? TryPop()
        {
            lock (_lock)
            {
                if (_count == 0)
                {
                    return null;
                }

                var item = _items[--_count];
                _items[_count] = null;
                return item;
            }
        }

        public bool TryPush(AlignedBuffer buffer)
        {
            lock (_lock)
            {
                if (_count == _items.Length)
                {
                    return false;
                }

                _items[_count++] = buffer;
                return true;
            }
        }
    }
}
