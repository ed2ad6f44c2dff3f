using Slab.Block;
using Slab.Volumes;
using Xunit;

namespace Slab.Tests.VolumeLayer;

public sealed class SnapshotCopierTests
{
    private const int MiB = 1024 * 1024;

    private static byte[] Pattern(int length, byte seed)
    {
        var data = new byte[length];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)(seed + (i * 7));
        }

        return data;
    }

    private static async Task<byte[]> ReadAllAsync(IBlockTarget target)
    {
        var data = new byte[target.Size];
        await target.ReadAsync(0, data, default);
        return data;
    }

    [Fact]
    public async Task A_copy_on_a_reflink_of_an_older_snapshot_gets_only_the_blocks_that_differ_and_loses_what_the_source_no_longer_has()
    {
        // The older snapshot (what the copy starts as): 64 KiB at 0, 64 KiB at 3 MiB.
        var older = new MemoryBlockTarget(4 * MiB);
        await older.WriteAsync(0, Pattern(64 * 1024, 1), BlockWriteFlags.None, default);
        await older.WriteAsync(3 * MiB, Pattern(64 * 1024, 2), BlockWriteFlags.None, default);

        // The snapshot to copy: one 4 KiB block at 8 KiB changed, 64 KiB more at 2 MiB, the data at 3 MiB gone.
        var source = new MemoryBlockTarget(4 * MiB);
        await source.WriteAsync(0, Pattern(64 * 1024, 1), BlockWriteFlags.None, default);
        await source.WriteAsync(8192, Pattern(4096, 9), BlockWriteFlags.None, default);
        await source.WriteAsync(2 * MiB, Pattern(64 * 1024, 3), BlockWriteFlags.None, default);

        var copy = new MemoryBlockTarget(4 * MiB);
        await copy.WriteAsync(0, await ReadAllAsync(older), BlockWriteFlags.None, default);
        await copy.TrimAsync(64 * 1024, (3 * MiB) - (64 * 1024), default);
        await copy.TrimAsync((3 * MiB) + (64 * 1024), MiB - (64 * 1024), default);

        var result = await SnapshotCopier.CopyAsync(source, copy, copyHasData: true, ranges: null, throttle: null, default);

        Assert.Equal(await ReadAllAsync(source), await ReadAllAsync(copy));
        Assert.Equal(128 * 1024, result.BytesRead); // the source's data extents only
        Assert.Equal(4096 + (64 * 1024), result.BytesWritten); // the changed block and the new extent
        Assert.Equal(source.AllocatedBytes, copy.AllocatedBytes); // the gone data is a hole again
    }

    [Fact]
    public async Task A_first_copy_writes_the_source_data_and_leaves_its_holes_unallocated()
    {
        var source = new MemoryBlockTarget((5 * MiB) + (64 * 1024));
        await source.WriteAsync(MiB - 4096, Pattern(8192, 4), BlockWriteFlags.None, default); // across two chunks
        await source.WriteAsync(5 * MiB, Pattern(64 * 1024, 5), BlockWriteFlags.None, default); // the short last chunk
        var copy = new MemoryBlockTarget(source.Size);

        var result = await SnapshotCopier.CopyAsync(source, copy, copyHasData: false, ranges: null, throttle: null, default);

        Assert.Equal(await ReadAllAsync(source), await ReadAllAsync(copy));
        Assert.Equal(source.AllocatedBytes, result.BytesWritten);
        Assert.Equal(source.AllocatedBytes, copy.AllocatedBytes);
    }

    [Fact]
    public async Task A_failing_copy_target_fails_the_copy()
    {
        var source = new MemoryBlockTarget(4 * MiB);
        await source.WriteAsync(0, Pattern(4096, 6), BlockWriteFlags.None, default);
        var copy = new MemoryBlockTarget(4 * MiB, readOnly: true);

        var failure = await Assert.ThrowsAsync<BlockTargetException>(() => SnapshotCopier.CopyAsync(source, copy, copyHasData: false, ranges: null, throttle: null, default));
        Assert.Equal(BlockError.ReadOnly, failure.Error);
    }
}
