using System.Runtime.InteropServices;
using Slab.Block;
using Slab.Buffers;

namespace Slab.Store;

// Reads, writes and flush. Every public member here completes synchronously (see the class remarks).
public sealed unsafe partial class ReplicaFile
{
    /// <summary>
    /// Reads <c>destination.Length</c> bytes at <paramref name="offset"/>. Blocks the calling thread
    /// for the pread; returns a completed task. Bytes never written (holes) read as zero.
    /// </summary>
    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            Read(offset, destination);
            return ValueTask.CompletedTask;
        }
        catch (BlockTargetException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>
    /// Writes <paramref name="source"/> at <paramref name="offset"/>; with ForceUnitAccess the data is
    /// durable when the call returns. Blocks the calling thread for the pwrite; returns a completed task.
    /// </summary>
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            Write(offset, source, (flags & BlockWriteFlags.ForceUnitAccess) != 0);
            return ValueTask.CompletedTask;
        }
        catch (BlockTargetException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>
    /// fdatasync: every write completed before the call, through any user of this replica, is durable
    /// when it returns. Blocks the calling thread; returns a completed task.
    /// </summary>
    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            Flush();
            return ValueTask.CompletedTask;
        }
        catch (BlockTargetException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    private void Read(long offset, Memory<byte> destination)
    {
        BlockTargetException.ThrowIfOutOfRange(offset, destination.Length, Size);
        if (destination.IsEmpty)
        {
            return;
        }

        var fd = Enter();
        try
        {
            if (TryGetDirectPointer(offset, destination, out var pointer))
            {
                ReadBlocks(fd, pointer, destination.Length, offset);
            }
            else
            {
                ReadBounced(fd, offset, destination.Span);
            }
        }
        finally
        {
            Exit();
        }
    }

    private void Write(long offset, ReadOnlyMemory<byte> source, bool forceUnitAccess)
    {
        ThrowIfReadOnly();
        BlockTargetException.ThrowIfOutOfRange(offset, source.Length, Size);
        if (source.IsEmpty)
        {
            return;
        }

        var fd = Enter();
        try
        {
            if (TryGetDirectPointer(offset, source, out var pointer))
            {
                WriteBlocks(fd, pointer, source.Length, offset, forceUnitAccess);
            }
            else
            {
                WriteBounced(fd, offset, source.Span, forceUnitAccess);
            }
        }
        finally
        {
            Exit();
        }
    }

    private void Flush()
    {
        var fd = Enter();
        try
        {
            var errno = LinuxFile.DataSync(fd);
            if (errno != 0)
            {
                throw Failure(errno, "fdatasync", 0, Size);
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// The fast path applies when offset, length and memory are all 4 KiB aligned and the memory is an
    /// <see cref="AlignedBuffer"/> (native, never moved, so no pinning is needed).
    /// </summary>
    private static bool TryGetDirectPointer(long offset, ReadOnlyMemory<byte> memory, out byte* pointer)
    {
        if ((offset & (BlockSize - 1)) == 0
            && AlignedBuffer.IsDirectCapable(memory, BlockSize)
            && MemoryMarshal.TryGetMemoryManager<byte, AlignedBuffer>(memory, out var manager, out var start, out _))
        {
            pointer = manager.Pointer + start;
            return true;
        }

        pointer = null;
        return false;
    }

    /// <summary>Reads whole blocks into aligned memory; bytes past end of file read as zero.</summary>
    private void ReadBlocks(int fd, byte* pointer, long count, long offset)
    {
        var errno = LinuxFile.ReadFull(fd, pointer, count, offset, out var done);
        if (errno != 0)
        {
            throw Failure(errno, "pread", offset, count);
        }

        if (done < count)
        {
            new Span<byte>(pointer + done, checked((int)(count - done))).Clear();
        }
    }

    /// <summary>Writes whole blocks from aligned memory, holding their stripes shared.</summary>
    private void WriteBlocks(int fd, byte* pointer, long count, long offset, bool forceUnitAccess)
    {
        var firstBlock = offset / BlockSize;
        var blocks = count / BlockSize;
        int errno;
        _stripes.EnterShared(firstBlock, blocks);
        try
        {
            errno = LinuxFile.WriteFull(fd, pointer, count, offset, forceUnitAccess);
        }
        finally
        {
            _stripes.ExitShared(firstBlock, blocks);
        }

        if (errno != 0)
        {
            throw Failure(errno, forceUnitAccess ? "pwrite(DSYNC)" : "pwrite", offset, count);
        }
    }

    /// <summary>Reads any range through a pooled aligned buffer, at most 32 MiB per syscall.</summary>
    private void ReadBounced(int fd, long offset, Span<byte> destination)
    {
        var end = offset + destination.Length;
        var alignedEnd = AlignUp(end);
        var buffer = AlignedBufferPool.Shared.Rent((int)Math.Min(alignedEnd - AlignDown(offset), AlignedBufferPool.MaximumBufferSize));
        try
        {
            var capacity = buffer.Capacity;
            var position = offset;
            while (position < end)
            {
                var windowStart = AlignDown(position);
                var windowEnd = Math.Min(alignedEnd, windowStart + capacity);
                ReadBlocks(fd, buffer.Pointer, windowEnd - windowStart, windowStart);
                var n = (int)(Math.Min(end, windowEnd) - position);
                new ReadOnlySpan<byte>(buffer.Pointer + (position - windowStart), n)
                    .CopyTo(destination.Slice((int)(position - offset), n));
                position += n;
            }
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>
    /// Writes any range through a pooled aligned buffer. Each window (at most 32 MiB) holds its blocks'
    /// stripes exclusive while it reads the partially covered edge blocks, patches in the new bytes and
    /// writes the window back, so concurrent writers of the same blocks never lose each other's bytes.
    /// </summary>
    private void WriteBounced(int fd, long offset, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        var end = offset + source.Length;
        var alignedEnd = AlignUp(end);
        var buffer = AlignedBufferPool.Shared.Rent((int)Math.Min(alignedEnd - AlignDown(offset), AlignedBufferPool.MaximumBufferSize));
        try
        {
            var capacity = buffer.Capacity;
            var position = offset;
            while (position < end)
            {
                var windowStart = AlignDown(position);
                var windowEnd = Math.Min(alignedEnd, windowStart + capacity);
                var chunkEnd = Math.Min(end, windowEnd);
                var firstBlock = windowStart / BlockSize;
                var blocks = (windowEnd - windowStart) / BlockSize;
                int errno;
                _stripes.EnterExclusive(firstBlock, blocks);
                try
                {
                    var headPartial = position > windowStart;
                    if (headPartial)
                    {
                        ReadBlocks(fd, buffer.Pointer, BlockSize, windowStart);
                    }

                    var lastBlock = windowEnd - BlockSize;
                    if (chunkEnd < windowEnd && !(headPartial && lastBlock == windowStart))
                    {
                        ReadBlocks(fd, buffer.Pointer + (lastBlock - windowStart), BlockSize, lastBlock);
                    }

                    var n = (int)(chunkEnd - position);
                    source.Slice((int)(position - offset), n)
                        .CopyTo(new Span<byte>(buffer.Pointer + (position - windowStart), n));
                    errno = LinuxFile.WriteFull(fd, buffer.Pointer, windowEnd - windowStart, windowStart, forceUnitAccess);
                }
                finally
                {
                    _stripes.ExitExclusive(firstBlock, blocks);
                }

                if (errno != 0)
                {
                    throw Failure(errno, forceUnitAccess ? "pwrite(DSYNC)" : "pwrite", windowStart, windowEnd - windowStart);
                }

                position = chunkEnd;
            }
        }
        finally
        {
            buffer.Return();
        }
    }

    private static long AlignDown(long value) => value & ~(long)(BlockSize - 1);

    private static long AlignUp(long value) => (value + BlockSize - 1) & ~(long)(BlockSize - 1);
}
