using Slab.Block;
using Slab.Buffers;
using Xunit;

namespace Slab.Tests.Store;

/// <summary>Helpers shared by the store tests.</summary>
internal static class StoreTestData
{
    public const int KiB = 1024;
    public const int MiB = 1024 * 1024;

    public static byte[] RandomBytes(Random random, int length)
    {
        var data = new byte[length];
        random.NextBytes(data);
        return data;
    }

    /// <summary>Reads the whole range with plain (unaligned-path) memory.</summary>
    public static async Task<byte[]> ReadAllAsync(IBlockTarget target, long offset, int length)
    {
        var data = new byte[length];
        await target.ReadAsync(offset, data, default);
        return data;
    }

    /// <summary>Reads through a pooled aligned buffer (the direct path when offset/length are aligned).</summary>
    public static async Task<byte[]> ReadAlignedAsync(IBlockTarget target, long offset, int length)
    {
        var result = new byte[length];
        var buffer = AlignedBufferPool.Shared.Rent(Math.Min(length, AlignedBufferPool.MaximumBufferSize));
        try
        {
            for (var done = 0; done < length;)
            {
                var n = Math.Min(length - done, buffer.Capacity);
                var memory = buffer.Memory[..n];
                await target.ReadAsync(offset + done, memory, default);
                memory.CopyTo(result.AsMemory(done));
                done += n;
            }

            return result;
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>Writes through a pooled aligned buffer.</summary>
    public static async Task WriteAlignedAsync(IBlockTarget target, long offset, ReadOnlyMemory<byte> data, BlockWriteFlags flags = BlockWriteFlags.None)
    {
        var buffer = AlignedBufferPool.Shared.Rent(Math.Min(data.Length, AlignedBufferPool.MaximumBufferSize));
        try
        {
            for (var done = 0; done < data.Length;)
            {
                var n = Math.Min(data.Length - done, buffer.Capacity);
                var memory = buffer.Memory[..n];
                data.Slice(done, n).CopyTo(memory);
                await target.WriteAsync(offset + done, memory, flags, default);
                done += n;
            }
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>All extents of [offset, offset+length), asserting they tile the range exactly.</summary>
    public static async Task<List<(long Offset, BlockExtent Extent)>> ExtentsAsync(IBlockTarget target, long offset, long length)
    {
        var result = new List<(long, BlockExtent)>();
        var buffer = new BlockExtent[16];
        var position = offset;
        var end = offset + length;
        while (position < end)
        {
            var n = await target.GetExtentsAsync(position, end - position, buffer, default);
            Assert.True(n > 0);
            for (var i = 0; i < n; i++)
            {
                Assert.True(buffer[i].Length > 0);
                result.Add((position, buffer[i]));
                position += buffer[i].Length;
            }
        }

        Assert.Equal(end, position);
        return result;
    }

    public static async Task<BlockTargetException> ThrowsBlockErrorAsync(BlockError expected, Func<Task> action)
    {
        var ex = await Assert.ThrowsAsync<BlockTargetException>(action);
        Assert.Equal(expected, ex.Error);
        return ex;
    }

    public static void AssertAllZero(ReadOnlyMemory<byte> data, string what)
    {
        var index = data.Span.IndexOfAnyExcept((byte)0);
        Assert.True(index < 0, $"{what}: non-zero byte at {index}");
    }

    /// <summary>Asserts equality and reports the first differing offset (xunit's array diff is slow for MiBs).</summary>
    public static void AssertSameBytes(ReadOnlyMemory<byte> expected, ReadOnlyMemory<byte> actual, long baseOffset, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var mismatch = expected.Span.CommonPrefixLength(actual.Span);
        Assert.True(mismatch == expected.Length, $"{what}: first difference at offset {baseOffset + mismatch}");
    }
}
