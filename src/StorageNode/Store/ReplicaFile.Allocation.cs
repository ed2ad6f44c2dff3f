using Slab.Block;
using Slab.Buffers;
using Tmds.Linux;

namespace Slab.Store;

// Thin provisioning: trim, write-zeroes, block status, growth and allocation accounting.
public sealed partial class ReplicaFile
{
    /// <summary>Zero bytes for the partial edge blocks of trim and write-zeroes (an edge is under two blocks).</summary>
    private static readonly byte[] _zeroes = new byte[2 * BlockSize];

    /// <summary>
    /// Bytes of disk the file occupies (fstat <c>st_blocks</c> × 512): data and preallocated
    /// extents, not holes. Shared reflinked extents count fully in every file that references them.
    /// </summary>
    /// <exception cref="BlockTargetException">Closed, or fstat failed (IOError).</exception>
    public long AllocatedBytes
    {
        get
        {
            var fd = Enter();
            try
            {
                var errno = LinuxFile.Stat(fd, out _, out var allocated, out _);
                return errno == 0 ? allocated : throw Failure(errno, "fstat", 0, 0);
            }
            finally
            {
                Exit();
            }
        }
    }

    /// <summary>
    /// Discards the range: whole 4 KiB blocks become holes (space is freed), partial edge blocks are
    /// zeroed by writing. The range reads back as zeroes. Synchronous; returns a completed task.
    /// </summary>
    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            ZeroRange(offset, length, punchHole: true, forceUnitAccess: false);
            return ValueTask.CompletedTask;
        }
        catch (BlockTargetException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>
    /// Makes the range read as zeroes: whole blocks are punched out (freeing space), or with
    /// <see cref="WriteZeroesFlags.NoHole"/> converted in place with FALLOC_FL_ZERO_RANGE (they stay
    /// allocated); partial edge blocks are zeroed by writing. With ForceUnitAccess the result is
    /// durable on return. Synchronous; returns a completed task.
    /// </summary>
    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            ZeroRange(
                offset,
                length,
                punchHole: (flags & WriteZeroesFlags.NoHole) == 0,
                forceUnitAccess: (flags & WriteZeroesFlags.ForceUnitAccess) != 0);
            return ValueTask.CompletedTask;
        }
        catch (BlockTargetException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>
    /// Block status from SEEK_DATA/SEEK_HOLE: holes are <c>Hole | Zero</c>, everything else
    /// <c>Data</c>. Extents are consecutive, start at <paramref name="offset"/> and never pass
    /// offset + length; adjacent extents differ in state. Stops early when
    /// <paramref name="destination"/> is full. XFS reports unwritten (zero-range) extents as holes.
    /// </summary>
    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        try
        {
            return ValueTask.FromResult(GetExtents(offset, length, destination.Span));
        }
        catch (BlockTargetException ex)
        {
            return ValueTask.FromException<int>(ex);
        }
    }

    /// <summary>
    /// Grows the file to <paramref name="newSize"/> bytes (new space is a hole) and makes the new
    /// length durable; <see cref="Size"/> reflects it when the call returns. Same size is a no-op.
    /// </summary>
    /// <exception cref="BlockTargetException">InvalidArgument when shrinking or not 4 KiB aligned;
    /// ReadOnly; NoSpace/IOError from ftruncate/fsync; Closed.</exception>
    public void Grow(long newSize)
    {
        ThrowIfReadOnly();
        if (newSize < 0 || newSize % BlockSize != 0)
        {
            throw new BlockTargetException(BlockError.InvalidArgument, $"new size {newSize} is not a non-negative multiple of {BlockSize}");
        }

        lock (_growLock)
        {
            var current = Size;
            if (newSize < current)
            {
                throw new BlockTargetException(BlockError.InvalidArgument, $"cannot shrink replica '{FilePath}' from {current} to {newSize} bytes");
            }

            if (newSize == current)
            {
                return;
            }

            var fd = Enter();
            try
            {
                var errno = LinuxFile.Truncate(fd, newSize);
                if (errno != 0)
                {
                    throw Failure(errno, "ftruncate", current, newSize - current);
                }

                errno = LinuxFile.Sync(fd);
                if (errno != 0)
                {
                    throw Failure(errno, "fsync", current, newSize - current);
                }

                Volatile.Write(ref _size, newSize);
            }
            finally
            {
                Exit();
            }
        }
    }

    private void ZeroRange(long offset, long length, bool punchHole, bool forceUnitAccess)
    {
        ThrowIfReadOnly();
        BlockTargetException.ThrowIfOutOfRange(offset, length, Size);
        if (length == 0)
        {
            return;
        }

        var fd = Enter();
        try
        {
            var end = offset + length;
            var interiorStart = AlignUp(offset);
            var interiorEnd = AlignDown(end);
            if (interiorStart >= interiorEnd)
            {
                // No whole block inside: under two blocks of bytes, zeroed by (read-modify-)write.
                WriteBounced(fd, offset, _zeroes.AsSpan(0, (int)length), forceUnitAccess);
                return;
            }

            if (offset < interiorStart)
            {
                WriteBounced(fd, offset, _zeroes.AsSpan(0, (int)(interiorStart - offset)), forceUnitAccess: false);
            }

            if (interiorEnd < end)
            {
                WriteBounced(fd, interiorEnd, _zeroes.AsSpan(0, (int)(end - interiorEnd)), forceUnitAccess: false);
            }

            ZeroBlocks(fd, interiorStart, interiorEnd - interiorStart, punchHole);
            if (forceUnitAccess)
            {
                var errno = LinuxFile.DataSync(fd);
                if (errno != 0)
                {
                    throw Failure(errno, "fdatasync", offset, length);
                }
            }
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// Zeroes whole blocks with fallocate (punch hole, or zero range keeping the allocation), holding
    /// their stripes shared; falls back to writing zeroes where the filesystem lacks the mode.
    /// </summary>
    private void ZeroBlocks(int fd, long offset, long length, bool punchHole)
    {
        var mode = LibC.FALLOC_FL_KEEP_SIZE | (punchHole ? LibC.FALLOC_FL_PUNCH_HOLE : LinuxFile.FallocZeroRange);
        var firstBlock = offset / BlockSize;
        var blocks = length / BlockSize;
        int errno;
        _stripes.EnterShared(firstBlock, blocks);
        try
        {
            errno = LinuxFile.Allocate(fd, mode, offset, length);
        }
        finally
        {
            _stripes.ExitShared(firstBlock, blocks);
        }

        if (errno == LibC.EOPNOTSUPP || errno == LinuxFile.ENOSYS)
        {
            WriteZeroBlocks(fd, offset, length);
        }
        else if (errno != 0)
        {
            throw Failure(errno, punchHole ? "fallocate(PUNCH_HOLE)" : "fallocate(ZERO_RANGE)", offset, length);
        }
    }

    /// <summary>Writes zeroes over whole blocks, 1 MiB per syscall (the fallback without fallocate modes).</summary>
    private unsafe void WriteZeroBlocks(int fd, long offset, long length)
    {
        var buffer = AlignedBufferPool.Shared.Rent((int)Math.Min(length, 1024 * 1024));
        try
        {
            buffer.GetSpan().Clear();
            var end = offset + length;
            while (offset < end)
            {
                var n = Math.Min(end - offset, buffer.Capacity);
                WriteBlocks(fd, buffer.Pointer, n, offset, forceUnitAccess: false);
                offset += n;
            }
        }
        finally
        {
            buffer.Return();
        }
    }

    private int GetExtents(long offset, long length, Span<BlockExtent> destination)
    {
        BlockTargetException.ThrowIfOutOfRange(offset, length, Size);
        if (length == 0 || destination.IsEmpty)
        {
            return 0;
        }

        var fd = Enter();
        try
        {
            var end = offset + length;
            var position = offset;
            var count = 0;
            while (position < end && count < destination.Length)
            {
                var data = LinuxFile.Seek(fd, position, LinuxFile.SeekData, out var errno);
                if (data < 0)
                {
                    if (errno != LinuxFile.ENXIO)
                    {
                        throw Failure(errno, "lseek(SEEK_DATA)", position, end - position);
                    }

                    data = end; // no data at or after position: a hole to end of file
                }

                long next;
                ExtentFlags state;
                if (data > position)
                {
                    next = Math.Min(data, end);
                    state = ExtentFlags.Hole | ExtentFlags.Zero;
                }
                else
                {
                    var hole = LinuxFile.Seek(fd, position, LinuxFile.SeekHole, out errno);
                    if (hole < 0)
                    {
                        throw Failure(errno, "lseek(SEEK_HOLE)", position, end - position);
                    }

                    // A hole at or before position can only come from a concurrent change; report data.
                    next = hole > position ? Math.Min(hole, end) : end;
                    state = ExtentFlags.Data;
                }

                if (count > 0 && destination[count - 1].Flags == state)
                {
                    destination[count - 1] = new BlockExtent(destination[count - 1].Length + (next - position), state);
                }
                else
                {
                    destination[count++] = new BlockExtent(next - position, state);
                }

                position = next;
            }

            return count;
        }
        finally
        {
            Exit();
        }
    }
}
