using System.Numerics;

namespace Slab.Buffers;

/// <summary>
/// A pool of <see cref="AlignedBuffer"/>s in power-of-two size classes from 4 KiB to 32 MiB.
/// </summary>
/// <remarks>
/// Thread-safe. Renting never allocates once a class has warmed up. The pool as a whole keeps at
/// most <see cref="RetainedBytesLimit"/> bytes of idle buffers (each class at most
/// <see cref="RetainedBytesPerClass"/>); a buffer returned beyond that is freed at once, so idle
/// memory stays bounded after a burst of large requests (bench/results/rss.md).
/// </remarks>
public sealed class AlignedBufferPool
{
    /// <summary>Alignment of every buffer in bytes (the page size; O_DIRECT needs the sector size).</summary>
    public const int Alignment = 4096;

    /// <summary>Smallest buffer in bytes.</summary>
    public const int MinimumBufferSize = 4096;

    /// <summary>Largest buffer in bytes (the largest NBD request we accept).</summary>
    public const int MaximumBufferSize = 32 * 1024 * 1024;

    /// <summary>Idle bytes one size class may keep.</summary>
    public const int RetainedBytesPerClass = 16 * 1024 * 1024;

    /// <summary>Idle bytes the whole pool may keep.</summary>
    public const long RetainedBytesLimit = 32L * 1024 * 1024;

    private static readonly int ClassCount = BitOperations.Log2(MaximumBufferSize / MinimumBufferSize) + 1;

    private readonly SizeClass[] _classes;
    private long _retainedBytes;

    public AlignedBufferPool()
    {
        _classes = new SizeClass[ClassCount];
        for (var i = 0; i < ClassCount; i++)
        {
            var size = MinimumBufferSize << i;
            _classes[i] = new SizeClass(size, Math.Max(1, RetainedBytesPerClass / size));
        }
    }

    /// <summary>Idle bytes held now.</summary>
    public long RetainedBytes => Interlocked.Read(ref _retainedBytes);

    /// <summary>The process-wide pool.</summary>
    public static AlignedBufferPool Shared { get; } = new();

    /// <summary>Rents a buffer of at least <paramref name="minimumLength"/> bytes (at most 32 MiB).</summary>
    public AlignedBuffer Rent(int minimumLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(minimumLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minimumLength, MaximumBufferSize);
        var sizeClass = _classes[ClassIndex(minimumLength)];
        if (sizeClass.TryPop() is { } pooled)
        {
            Interlocked.Add(ref _retainedBytes, -pooled.Capacity);
            return pooled;
        }

        return new AlignedBuffer(sizeClass.BufferSize, this);
    }

    internal void Return(AlignedBuffer buffer)
    {
        var sizeClass = _classes[ClassIndex(buffer.Capacity)];
        if (Interlocked.Add(ref _retainedBytes, buffer.Capacity) > RetainedBytesLimit)
        {
            Interlocked.Add(ref _retainedBytes, -buffer.Capacity);
            buffer.Free();
            return;
        }

        if (!sizeClass.TryPush(buffer))
        {
            Interlocked.Add(ref _retainedBytes, -buffer.Capacity);
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
