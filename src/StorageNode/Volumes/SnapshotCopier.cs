using Slab.Block;
using Slab.Buffers;
using Slab.Common;

namespace Slab.Volumes;

/// <summary>What one snapshot copy moved: bytes read from the holder, bytes written to the copy.</summary>
public readonly record struct SnapshotCopyResult(long BytesRead, long BytesWritten);

/// <summary>
/// Fills a new copy of a snapshot from a replica that holds it (any block target: the holder's
/// snapshot over the replication protocol in a cluster, memory targets in tests). The copy starts as
/// a reflink of an older snapshot of the same volume (or empty), so only what differs is written:
/// data blocks compared 4 KiB by 4 KiB with what the copy already has, holes punched where the
/// source has none of the copy's data. Blocks equal to the older snapshot's stay shared with it.
/// </summary>
/// <remarks>Reads the source's allocated extents only (within the ranges it is given, when the holder
/// can tell which ranges differ from the older snapshot); <see cref="ConcurrentChunks"/> pieces of at
/// most <see cref="ChunkBytes"/> at once.</remarks>
public static class SnapshotCopier
{
    /// <summary>Bytes one worker asks the source for at a time (1 MiB).</summary>
    public const int ChunkBytes = 1024 * 1024;

    /// <summary>Chunks copied side by side: each is a chain of round trips to the source.</summary>
    public const int ConcurrentChunks = 4;

    private const int BlockBytes = 4096;

    /// <summary>
    /// Makes <paramref name="copy"/> equal to <paramref name="source"/> over the source's size, or
    /// over <paramref name="ranges"/> only when given (in order, not overlapping: where the source
    /// may differ from what the copy starts as; the rest is left alone).
    /// <paramref name="copyHasData"/> says whether the copy may hold data already (a reflink of an
    /// older snapshot); when false it is all holes and only the source's data is written.
    /// </summary>
    /// <exception cref="BlockTargetException">A read of the source or a write of the copy failed.</exception>
    public static async Task<SnapshotCopyResult> CopyAsync(
        IBlockTarget source,
        IBlockTarget copy,
        bool copyHasData,
        IReadOnlyList<(long Offset, long Length)>? ranges,
        CopyThrottle? throttle,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(copy);
        var size = Math.Min(source.Size, copy.Size);
        var progress = new Progress(ranges ?? [(0, size)], size);
        await WorkerGroup.RunAsync(ConcurrentChunks, ct => CopyChunksAsync(source, copy, copyHasData, throttle, progress, ct), cancellationToken).ConfigureAwait(false);
        return new SnapshotCopyResult(progress.BytesRead, progress.BytesWritten);
    }

    /// <summary>
    /// The work the workers share: the ranges handed out in pieces that end at <see cref="ChunkBytes"/>
    /// boundaries (or at a range's end, or the size), and what they moved.
    /// </summary>
    private sealed class Progress(IReadOnlyList<(long Offset, long Length)> ranges, long size)
    {
        private readonly Lock _lock = new();
        private int _range;
        private long _position = ranges.Count > 0 ? ranges[0].Offset : 0;
        public long BytesRead;
        public long BytesWritten;

        /// <summary>The next piece [Offset, End); false when none is left.</summary>
        public bool TryTake(out long offset, out long end)
        {
            lock (_lock)
            {
                while (_range < ranges.Count)
                {
                    var rangeEnd = Math.Min(ranges[_range].Offset + ranges[_range].Length, size);
                    if (_position < rangeEnd)
                    {
                        offset = _position;
                        end = Math.Min(((_position / ChunkBytes) + 1) * ChunkBytes, rangeEnd);
                        _position = end;
                        return true;
                    }

                    if (++_range < ranges.Count)
                    {
                        _position = ranges[_range].Offset;
                    }
                }

                (offset, end) = (0, 0);
                return false;
            }
        }
    }

    private static async Task CopyChunksAsync(
        IBlockTarget source,
        IBlockTarget copy,
        bool copyHasData,
        CopyThrottle? throttle,
        Progress progress,
        CancellationToken cancellationToken)
    {
        var theirs = AlignedBufferPool.Shared.Rent(ChunkBytes);
        var ours = copyHasData ? AlignedBufferPool.Shared.Rent(ChunkBytes) : null;
        var extents = new BlockExtent[64];
        try
        {
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!progress.TryTake(out var position, out var end))
                {
                    return;
                }

                while (position < end)
                {
                    var count = await source.GetExtentsAsync(position, end - position, extents, cancellationToken).ConfigureAwait(false);
                    if (count == 0)
                    {
                        throw new BlockTargetException(BlockError.IOError, $"the snapshot's holder reported no extents at offset {position}");
                    }

                    for (var i = 0; i < count && position < end; i++)
                    {
                        var length = Math.Min(extents[i].Length, end - position);
                        if ((extents[i].Flags & (ExtentFlags.Hole | ExtentFlags.Zero)) != 0)
                        {
                            if (copyHasData)
                            {
                                await copy.WriteZeroesAsync(position, length, WriteZeroesFlags.None, cancellationToken).ConfigureAwait(false);
                            }
                        }
                        else
                        {
                            if (throttle is not null)
                            {
                                await throttle.AcquireAsync(length, cancellationToken).ConfigureAwait(false);
                            }

                            var data = theirs.Memory[..(int)length];
                            await source.ReadAsync(position, data, cancellationToken).ConfigureAwait(false);
                            Interlocked.Add(ref progress.BytesRead, length);
                            var written = ours is null
                                ? await WriteAllAsync(copy, position, data, cancellationToken).ConfigureAwait(false)
                                : await WriteDifferencesAsync(copy, position, data, ours.Memory[..(int)length], cancellationToken).ConfigureAwait(false);
                            Interlocked.Add(ref progress.BytesWritten, written);
                        }

                        position += length;
                    }
                }
            }
        }
        finally
        {
            theirs.Return();
            ours?.Return();
        }
    }

    private static async ValueTask<long> WriteAllAsync(IBlockTarget copy, long position, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        await copy.WriteAsync(position, data, BlockWriteFlags.None, cancellationToken).ConfigureAwait(false);
        return data.Length;
    }

    /// <summary>Reads what the copy has at <paramref name="position"/> and writes each run of 4 KiB blocks that differs from <paramref name="data"/>.</summary>
    private static async ValueTask<long> WriteDifferencesAsync(IBlockTarget copy, long position, ReadOnlyMemory<byte> data, Memory<byte> current, CancellationToken cancellationToken)
    {
        await copy.ReadAsync(position, current, cancellationToken).ConfigureAwait(false);
        long written = 0;
        var offset = 0;
        while (offset < data.Length)
        {
            var start = NextDifference(data.Span, current.Span, offset, differing: true);
            if (start >= data.Length)
            {
                break;
            }

            var stop = NextDifference(data.Span, current.Span, start, differing: false);
            await copy.WriteAsync(position + start, data[start..stop], BlockWriteFlags.None, cancellationToken).ConfigureAwait(false);
            written += stop - start;
            offset = stop;
        }

        return written;
    }

    /// <summary>The offset of the first block from <paramref name="offset"/> that differs (or, with <paramref name="differing"/> false, is equal); the length when none.</summary>
    private static int NextDifference(ReadOnlySpan<byte> data, ReadOnlySpan<byte> current, int offset, bool differing)
    {
        while (offset < data.Length)
        {
            var length = Math.Min(BlockBytes, data.Length - offset);
            var equal = data.Slice(offset, length).SequenceEqual(current.Slice(offset, length));
            if (equal != differing)
            {
                return offset;
            }

            offset += length;
        }

        return data.Length;
    }
}
