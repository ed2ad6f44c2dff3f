using Slab.Block;
using Slab.Common;
using Slab.Store;
using Slab.Tests.Infrastructure;
using Xunit;
using static Slab.Tests.Store.StoreTestData;

namespace Slab.Tests.Store;

public sealed class ReplicaFileTests
{
    [Fact]
    public async Task Create_makes_a_sparse_file_of_the_size_and_refuses_an_existing_path()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        var path = xfs.PathOf("r1");
        using (var replica = ReplicaFile.Create(path, 64 * MiB))
        {
            Assert.Equal(64 * MiB, replica.Size);
            Assert.Equal(64 * MiB, new FileInfo(path).Length);
            Assert.Equal(0, replica.AllocatedBytes);
            Assert.True(replica.IsDirectIo);
            Assert.True(replica.Features.HasFlag(BlockTargetFeatures.MultiConnection));
            Assert.False(replica.Features.HasFlag(BlockTargetFeatures.ReadOnly));
            Assert.Equal(new BlockGeometry(1, 4096, 32 * MiB), replica.Geometry);
            var extents = await ExtentsAsync(replica, 0, replica.Size);
            Assert.Equal([(0L, new BlockExtent(64 * MiB, ExtentFlags.Hole | ExtentFlags.Zero))], extents);
        }

        var ex = Assert.Throws<LinuxFileException>(() => ReplicaFile.Create(path, 4096));
        Assert.Equal(17, ex.Errno); // EEXIST
        Assert.Equal(64 * MiB, new FileInfo(path).Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => ReplicaFile.Create(xfs.PathOf("odd"), 5000));
        Assert.False(File.Exists(xfs.PathOf("odd")));
        Assert.Equal(2, Assert.Throws<LinuxFileException>(() => ReplicaFile.Open(xfs.PathOf("missing"), ReplicaFileOptions.Default)).Errno);
    }

    [Fact]
    public async Task Aligned_and_unaligned_round_trips_match_the_written_bytes()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 16 * MiB);
        var random = new Random(1234);
        var model = new byte[replica.Size];

        // Aligned (direct path) writes and reads.
        foreach (var (offset, length) in new[] { (0L, 4096), (8192L, 64 * KiB), (5 * MiB, 1 * MiB), (16 * MiB - 4096, 4096) })
        {
            var data = RandomBytes(random, length);
            await WriteAlignedAsync(replica, offset, data);
            data.CopyTo(model, offset);
            AssertSameBytes(data, await ReadAlignedAsync(replica, offset, length), offset, "aligned read");
        }

        // Unaligned offsets, lengths and memory, including straddling block and window edges.
        foreach (var (offset, length) in new[] { (1L, 1), (4095L, 2), (100L, 10_000), (3 * MiB - 7, 70_001), (16 * MiB - 5, 5), (6 * MiB + 512, 512) })
        {
            var data = RandomBytes(random, length);
            await replica.WriteAsync(offset, data, BlockWriteFlags.None, default);
            data.CopyTo(model, offset);
            AssertSameBytes(data, await ReadAllAsync(replica, offset, length), offset, "unaligned read");
        }

        // Aligned offset with plain managed memory (bounced, but no RMW needed).
        var managed = RandomBytes(random, 12 * KiB);
        await replica.WriteAsync(9 * MiB, managed, BlockWriteFlags.ForceUnitAccess, default);
        managed.CopyTo(model, 9 * MiB);

        await replica.FlushAsync(default);
        AssertSameBytes(model, await ReadAllAsync(replica, 0, (int)replica.Size), 0, "whole file (bounced)");
        AssertSameBytes(model, await ReadAlignedAsync(replica, 0, (int)replica.Size), 0, "whole file (direct)");

        // The data is really in the file: reopen and compare.
        replica.Dispose();
        using var reopened = ReplicaFile.Open(xfs.PathOf("r"), new ReplicaFileOptions { ReadOnly = true });
        AssertSameBytes(model, await ReadAllAsync(reopened, 0, (int)reopened.Size), 0, "after reopen");
    }

    [Fact]
    public async Task Concurrent_unaligned_writes_to_one_block_all_survive()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 2 * MiB);
        const int Writers = 48;
        const int Slice = 100; // 48 slices span 4800 bytes: blocks 0 and 1, one slice straddling the edge
        const int Rounds = 100;
        const int Base = 10;
        const int AlignedWriters = 4;

        // Dedicated threads released together, so the read-modify-writes really overlap (the calls
        // are synchronous; pool threads would mostly run them one after another). Aligned writers
        // hammer other blocks that share the same lock stripes meanwhile.
        using var start = new Barrier(Writers + AlignedWriters);
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var threads = new List<Thread>();
        for (var w = 0; w < Writers; w++)
        {
            var writer = w;
            threads.Add(new Thread(() => Run(() =>
            {
                var data = new byte[Slice];
                start.SignalAndWait();
                for (var round = 0; round < Rounds; round++)
                {
                    Array.Fill(data, (byte)(writer + round));
                    // The contract: the call completes synchronously.
                    var write = replica.WriteAsync(Base + (writer * Slice), data, BlockWriteFlags.None, default);
                    Assert.True(write.IsCompleted);
                    write.GetAwaiter().GetResult();
                }
            })));
        }

        for (var a = 0; a < AlignedWriters; a++)
        {
            var block = 256 + a;
            threads.Add(new Thread(() => Run(() =>
            {
                var data = RandomBytes(new Random(block), 4096);
                start.SignalAndWait();
                for (var round = 0; round < Rounds; round++)
                {
                    WriteAlignedAsync(replica, block * 4096L, data).GetAwaiter().GetResult();
                }
            })));
        }

        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);

        var back = await ReadAllAsync(replica, 0, 3 * 4096);
        AssertAllZero(back.AsMemory(0, Base), "before the slices");
        for (var w = 0; w < Writers; w++)
        {
            var expected = (byte)(w + Rounds - 1);
            Assert.True(back.AsSpan(Base + (w * Slice), Slice).IndexOfAnyExcept(expected) < 0, $"writer {w}'s slice lost bytes");
        }

        AssertAllZero(back.AsMemory(Base + (Writers * Slice)), "after the slices");

        void Run(Action action)
        {
            try
            {
                action();
            }
            catch (Exception ex)
            {
                errors.Enqueue(ex);
            }
        }
    }

    [Fact]
    public async Task Aligned_requests_complete_synchronously_without_allocating()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 4 * MiB);
        var buffer = Slab.Buffers.AlignedBufferPool.Shared.Rent(64 * KiB);
        try
        {
            var memory = buffer.Memory[..(64 * KiB)];
            RandomBytes(new Random(4), memory.Length).CopyTo(memory);
            var extents = new BlockExtent[8];
            var allocated = MeasureAlignedRequests(replica, memory, extents, rounds: 8); // warm up
            allocated = MeasureAlignedRequests(replica, memory, extents, rounds: 64);
            Assert.Equal(0, allocated);
        }
        finally
        {
            buffer.Return();
        }
    }

    /// <summary>Bytes allocated on this thread by aligned writes, reads, flushes and block status.</summary>
    private static long MeasureAlignedRequests(ReplicaFile replica, Memory<byte> memory, Memory<BlockExtent> extents, int rounds)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < rounds; i++)
        {
            var offset = (i % 32) * 64L * KiB;
            var write = replica.WriteAsync(offset, memory, i % 8 == 0 ? BlockWriteFlags.ForceUnitAccess : BlockWriteFlags.None, default);
            Assert.True(write.IsCompletedSuccessfully);
            var read = replica.ReadAsync(offset, memory, default);
            Assert.True(read.IsCompletedSuccessfully);
            var status = replica.GetExtentsAsync(0, replica.Size, extents, default);
            Assert.True(status.IsCompletedSuccessfully);
        }

        var flush = replica.FlushAsync(default);
        Assert.True(flush.IsCompletedSuccessfully);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public async Task Trim_reads_back_zero_and_frees_space()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 16 * MiB);
        var data = RandomBytes(new Random(7), 8 * MiB);
        await WriteAlignedAsync(replica, 0, data);
        await replica.FlushAsync(default);
        var before = replica.AllocatedBytes;
        Assert.True(before >= 8 * MiB, $"allocated {before}");

        // Unaligned edges: the partial blocks are zeroed, the whole blocks punched.
        const long TrimStart = (1 * MiB) + 100;
        const long TrimLength = (4 * MiB) + 50;
        await replica.TrimAsync(TrimStart, TrimLength, default);

        var back = await ReadAllAsync(replica, 0, 8 * MiB);
        AssertSameBytes(data.AsMemory(0, (int)TrimStart), back.AsMemory(0, (int)TrimStart), 0, "before trim");
        AssertAllZero(back.AsMemory((int)TrimStart, (int)TrimLength), "trimmed range");
        var after = (int)(TrimStart + TrimLength);
        AssertSameBytes(data.AsMemory(after), back.AsMemory(after), after, "after trim");

        var freed = before - replica.AllocatedBytes;
        Assert.True(freed >= (4 * MiB) - 8192, $"trim freed only {freed} bytes");

        var extents = await ExtentsAsync(replica, 0, 8 * MiB);
        Assert.Equal(
            [
                (0L, new BlockExtent((1 * MiB) + 4096, ExtentFlags.Data)),
                ((1 * MiB) + 4096, new BlockExtent((4 * MiB) - 4096, ExtentFlags.Hole | ExtentFlags.Zero)),
                (5 * MiB, new BlockExtent(3 * MiB, ExtentFlags.Data)),
            ],
            extents);
    }

    [Fact]
    public async Task Write_zeroes_punches_unless_NoHole_which_keeps_the_allocation()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 16 * MiB);
        await WriteAlignedAsync(replica, 0, RandomBytes(new Random(8), 8 * MiB));
        var before = replica.AllocatedBytes;

        await replica.WriteZeroesAsync(0, 2 * MiB, WriteZeroesFlags.NoHole | WriteZeroesFlags.ForceUnitAccess, default);
        AssertAllZero(await ReadAllAsync(replica, 0, 2 * MiB), "zeroed with NoHole");
        Assert.True(replica.AllocatedBytes >= before, $"NoHole released space: {before} -> {replica.AllocatedBytes}");

        await replica.WriteZeroesAsync(4 * MiB, 2 * MiB, WriteZeroesFlags.None, default);
        AssertAllZero(await ReadAllAsync(replica, 4 * MiB, 2 * MiB), "zeroed by punching");
        Assert.True(replica.AllocatedBytes <= before - (2 * MiB), $"punching kept space: {before} -> {replica.AllocatedBytes}");

        // Tiny unaligned zeroing inside one block.
        await replica.WriteZeroesAsync((7 * MiB) + 10, 20, WriteZeroesFlags.None, default);
        var block = await ReadAllAsync(replica, 7 * MiB, 4096);
        AssertAllZero(block.AsMemory(10, 20), "tiny zeroing");
        Assert.True(block.AsSpan(0, 10).IndexOfAnyExcept((byte)0) >= 0 || block.AsSpan(30).IndexOfAnyExcept((byte)0) >= 0);
    }

    [Fact]
    public async Task Extents_match_the_written_ranges()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 32 * MiB);
        await WriteAlignedAsync(replica, 1 * MiB, RandomBytes(new Random(1), 64 * KiB));
        await WriteAlignedAsync(replica, 10 * MiB, RandomBytes(new Random(2), 1 * MiB));
        await replica.WriteAsync((20 * MiB) + 5, new byte[] { 1, 2, 3 }, BlockWriteFlags.None, default); // allocates one block
        await WriteAlignedAsync(replica, (32 * MiB) - 8192, RandomBytes(new Random(3), 8192));

        const ExtentFlags Hole = ExtentFlags.Hole | ExtentFlags.Zero;
        var extents = await ExtentsAsync(replica, 0, replica.Size);
        Assert.Equal(
            [
                (0L, new BlockExtent(1 * MiB, Hole)),
                (1 * MiB, new BlockExtent(64 * KiB, ExtentFlags.Data)),
                ((1 * MiB) + (64 * KiB), new BlockExtent((9 * MiB) - (64 * KiB), Hole)),
                (10 * MiB, new BlockExtent(1 * MiB, ExtentFlags.Data)),
                (11 * MiB, new BlockExtent(9 * MiB, Hole)),
                (20 * MiB, new BlockExtent(4096, ExtentFlags.Data)),
                ((20 * MiB) + 4096, new BlockExtent((12 * MiB) - 4096 - 8192, Hole)),
                ((32 * MiB) - 8192, new BlockExtent(8192, ExtentFlags.Data)),
            ],
            extents);

        // A sub-range query starts at the offset and is clipped to the length.
        var window = new BlockExtent[2];
        var n = await replica.GetExtentsAsync((1 * MiB) + 4096, 1 * MiB, window, default);
        Assert.Equal(2, n);
        Assert.Equal(new BlockExtent((64 * KiB) - 4096, ExtentFlags.Data), window[0]);
        Assert.Equal(new BlockExtent((1 * MiB) - (64 * KiB) + 4096, Hole), window[1]);
    }

    [Fact]
    public async Task Out_of_range_read_only_closed_and_cancelled_requests_fail_typed()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        var path = xfs.PathOf("r");
        using (var replica = ReplicaFile.Create(path, 1 * MiB))
        {
            await ThrowsBlockErrorAsync(BlockError.OutOfRange, async () => await replica.ReadAsync((1 * MiB) - 10, new byte[11], default));
            await ThrowsBlockErrorAsync(BlockError.OutOfRange, async () => await replica.ReadAsync(-1, new byte[1], default));
            await ThrowsBlockErrorAsync(BlockError.OutOfRange, async () => await replica.WriteAsync(1 * MiB, new byte[4096], BlockWriteFlags.None, default));
            await ThrowsBlockErrorAsync(BlockError.OutOfRange, async () => await replica.TrimAsync(0, (1 * MiB) + 1, default));
            await ThrowsBlockErrorAsync(BlockError.OutOfRange, async () => await replica.WriteZeroesAsync(2 * MiB, 1, WriteZeroesFlags.None, default));
            await ThrowsBlockErrorAsync(BlockError.OutOfRange, async () => await replica.GetExtentsAsync(0, (2 * MiB), new BlockExtent[4], default));
            await ThrowsBlockErrorAsync(BlockError.InvalidArgument, () => Task.Run(() => replica.Grow(4096)));
            await ThrowsBlockErrorAsync(BlockError.InvalidArgument, () => Task.Run(() => replica.Grow((2 * MiB) + 1)));

            using var cancelled = new CancellationTokenSource();
            await cancelled.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await replica.ReadAsync(0, new byte[1], cancelled.Token));

            await replica.WriteAsync(0, new byte[] { 42 }, BlockWriteFlags.None, default);
        }

        using (var snapshot = ReplicaFile.Open(path, new ReplicaFileOptions { ReadOnly = true }))
        {
            Assert.True(snapshot.Features.HasFlag(BlockTargetFeatures.ReadOnly));
            Assert.Equal(42, (await ReadAllAsync(snapshot, 0, 1))[0]);
            await ThrowsBlockErrorAsync(BlockError.ReadOnly, async () => await snapshot.WriteAsync(0, new byte[1], BlockWriteFlags.None, default));
            await ThrowsBlockErrorAsync(BlockError.ReadOnly, async () => await snapshot.TrimAsync(0, 4096, default));
            await ThrowsBlockErrorAsync(BlockError.ReadOnly, async () => await snapshot.WriteZeroesAsync(0, 4096, WriteZeroesFlags.None, default));
            await ThrowsBlockErrorAsync(BlockError.ReadOnly, () => Task.Run(() => snapshot.Grow(2 * MiB)));

            snapshot.Dispose();
            snapshot.Dispose();
            await ThrowsBlockErrorAsync(BlockError.Closed, async () => await snapshot.ReadAsync(0, new byte[1], default));
            await ThrowsBlockErrorAsync(BlockError.Closed, async () => await snapshot.FlushAsync(default));
            await ThrowsBlockErrorAsync(BlockError.Closed, async () => await snapshot.GetExtentsAsync(0, 4096, new BlockExtent[1], default));
            await ThrowsBlockErrorAsync(BlockError.Closed, () => Task.FromResult(snapshot.AllocatedBytes));
        }
    }

    [Fact]
    public async Task A_full_filesystem_fails_writes_with_NoSpace()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        // Thin provisioning: the replica is larger than the filesystem.
        using var replica = ReplicaFile.Create(xfs.PathOf("r"), 1024L * MiB);
        // Fill all but ~16 MiB with a preallocated file so the test writes little.
        var filler = xfs.AvailableBytes - (16 * MiB);
        await ExternalCommand.RunCheckedAsync("fallocate", ["-l", filler.ToString(), xfs.PathOf("filler")], default);

        var chunk = RandomBytes(new Random(5), 1 * MiB);
        BlockTargetException? failure = null;
        long offset = 0;
        for (; offset < replica.Size; offset += chunk.Length)
        {
            try
            {
                await WriteAlignedAsync(replica, offset, chunk);
            }
            catch (BlockTargetException ex)
            {
                failure = ex;
                break;
            }
        }

        Assert.NotNull(failure);
        Assert.Equal(BlockError.NoSpace, failure.Error);
        Assert.Equal(28, Assert.IsType<LinuxFileException>(failure.InnerException).Errno); // ENOSPC
        Assert.InRange(offset, 1 * MiB, 32 * MiB);

        // Earlier data is intact; freeing space makes writes work again.
        AssertSameBytes(chunk, await ReadAlignedAsync(replica, 0, chunk.Length), 0, "first chunk");
        File.Delete(xfs.PathOf("filler"));
        await WriteAlignedAsync(replica, offset, chunk);
    }

    [Fact]
    public async Task Grow_extends_the_file_with_zeroes_and_Size_follows_at_once()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        var path = xfs.PathOf("r");
        using var replica = ReplicaFile.Create(path, 1 * MiB);
        await replica.WriteAsync((1 * MiB) - 3, new byte[] { 1, 2, 3 }, BlockWriteFlags.None, default);

        replica.Grow(3 * MiB);
        Assert.Equal(3 * MiB, replica.Size);
        Assert.Equal(3 * MiB, new FileInfo(path).Length);
        replica.Grow(3 * MiB); // no-op

        Assert.Equal(new byte[] { 1, 2, 3, 0, 0 }, await ReadAllAsync(replica, (1 * MiB) - 3, 5));
        AssertAllZero(await ReadAlignedAsync(replica, 1 * MiB, 2 * MiB), "grown space");
        await replica.WriteAsync((3 * MiB) - 1, new byte[] { 9 }, BlockWriteFlags.ForceUnitAccess, default);
        Assert.Equal(9, (await ReadAllAsync(replica, (3 * MiB) - 1, 1))[0]);
        var extents = await ExtentsAsync(replica, 1 * MiB, 2 * MiB);
        Assert.Equal(ExtentFlags.Hole | ExtentFlags.Zero, extents[0].Extent.Flags);
        Assert.Equal(ExtentFlags.Data, extents[^1].Extent.Flags);
        await ThrowsBlockErrorAsync(BlockError.InvalidArgument, () => Task.Run(() => replica.Grow(2 * MiB)));
    }

    [Fact]
    public async Task Direct_io_off_works_on_tmpfs()
    {
        var shm = Path.Combine("/dev/shm", $"slab-replica-{Guid.NewGuid():N}");
        try
        {
            using var replica = ReplicaFile.Create(shm, 1 * MiB, new ReplicaFileOptions { DirectIo = false });
            Assert.False(replica.IsDirectIo);
            var data = RandomBytes(new Random(3), 10_000);
            await replica.WriteAsync(123, data, BlockWriteFlags.ForceUnitAccess, default);
            await replica.TrimAsync(4096, 4096, default);
            await replica.WriteZeroesAsync(8192, 4096, WriteZeroesFlags.NoHole, default);
            var expected = new byte[12_288];
            data.CopyTo(expected, 123);
            Array.Clear(expected, 4096, 8192);
            AssertSameBytes(expected, await ReadAllAsync(replica, 0, expected.Length), 0, "tmpfs replica");
        }
        finally
        {
            File.Delete(shm);
        }
    }
}
