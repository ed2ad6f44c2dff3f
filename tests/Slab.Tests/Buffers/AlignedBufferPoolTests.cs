using Slab.Buffers;
using Xunit;

namespace Slab.Tests.Buffers;

public sealed class AlignedBufferPoolTests
{
    [Fact]
    public unsafe void Buffers_are_aligned_sized_and_reused()
    {
        var pool = new AlignedBufferPool();
        var buffer = pool.Rent(5000);
        Assert.Equal(8192, buffer.Capacity);
        Assert.Equal(0, (long)buffer.Pointer % AlignedBufferPool.Alignment);
        Assert.True(AlignedBuffer.IsDirectCapable(buffer.Memory, 4096));
        Assert.False(AlignedBuffer.IsDirectCapable(buffer.Memory[1..4097], 4096));
        buffer.Return();
        Assert.Same(buffer, pool.Rent(8192));
    }

    [Fact]
    public void Idle_memory_stays_under_the_limit_after_a_burst()
    {
        var pool = new AlignedBufferPool();
        var burst = Enumerable.Range(0, 64).Select(_ => pool.Rent(1 << 20)).Concat(Enumerable.Range(0, 4).Select(_ => pool.Rent(32 << 20))).ToList();
        foreach (var buffer in burst)
        {
            buffer.Return();
        }

        Assert.InRange(pool.RetainedBytes, 1, AlignedBufferPool.RetainedBytesLimit);

        // What is retained is really reusable, and accounting stays exact across rent/return.
        var again = pool.Rent(1 << 20);
        var before = pool.RetainedBytes;
        again.Return();
        Assert.Equal(before + (1 << 20), pool.RetainedBytes);
    }
}
