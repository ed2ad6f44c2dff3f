using Slab.Block;
using Xunit;

namespace Slab.Tests;

public sealed class MemoryBlockTargetTests
{
    [Fact]
    public async Task Written_bytes_read_back_and_holes_are_reported()
    {
        var target = new MemoryBlockTarget(1024 * 1024);
        var data = new byte[5000];
        Random.Shared.NextBytes(data);
        await target.WriteAsync(70_000, data, BlockWriteFlags.None, default);
        var back = new byte[5000];
        await target.ReadAsync(70_000, back, default);
        Assert.Equal(data, back);

        var extents = new BlockExtent[8];
        var n = await target.GetExtentsAsync(0, target.Size, extents, default);
        Assert.Equal(3, n);
        Assert.Equal(new BlockExtent(65536, ExtentFlags.Hole | ExtentFlags.Zero), extents[0]);
        Assert.Equal(new BlockExtent(65536, ExtentFlags.Data), extents[1]);
    }

    [Fact]
    public async Task Out_of_range_is_a_typed_error()
    {
        var target = new MemoryBlockTarget(4096);
        var ex = await Assert.ThrowsAsync<BlockTargetException>(async () => await target.ReadAsync(4000, new byte[200], default));
        Assert.Equal(BlockError.OutOfRange, ex.Error);
    }
}
