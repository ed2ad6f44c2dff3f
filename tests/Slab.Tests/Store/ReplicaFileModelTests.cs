using Slab.Block;
using Slab.Store;
using Slab.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using static Slab.Tests.Store.StoreTestData;

namespace Slab.Tests.Store;

/// <summary>Random operations against a replica on XFS, checked against a byte-array model.</summary>
public sealed class ReplicaFileModelTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(11, true)]
    [InlineData(12, true)]
    [InlineData(13, false)]
    public async Task Random_operations_match_a_byte_array_model(int seed, bool directIo)
    {
        output.WriteLine($"seed {seed}, direct I/O {directIo}");
        await using var xfs = await XfsScratch.CreateAsync();
        const int MaxSize = 16 * MiB;
        var random = new Random(seed);
        var model = new byte[MaxSize];
        var path = xfs.PathOf("model");
        ReplicaFile.Create(path, 4 * MiB).Dispose();
        using var replica = ReplicaFile.Open(path, new ReplicaFileOptions { DirectIo = directIo });

        for (var step = 0; step < 1500; step++)
        {
            var size = replica.Size;
            var op = random.Next(100);
            if (op < 30)
            {
                // Aligned write from pooled memory (direct path), sometimes FUA.
                var blocks = random.Next(1, 65);
                var offset = random.NextInt64(0, (size / 4096) - blocks + 1) * 4096;
                var data = RandomBytes(random, blocks * 4096);
                await WriteAlignedAsync(replica, offset, data, random.Next(4) == 0 ? BlockWriteFlags.ForceUnitAccess : BlockWriteFlags.None);
                data.CopyTo(model, offset);
            }
            else if (op < 55)
            {
                // Unaligned write from managed memory.
                var length = random.Next(1, 100_000);
                var offset = random.NextInt64(0, size - length + 1);
                var data = RandomBytes(random, length);
                await replica.WriteAsync(offset, data, random.Next(4) == 0 ? BlockWriteFlags.ForceUnitAccess : BlockWriteFlags.None, default);
                data.CopyTo(model, offset);
            }
            else if (op < 75)
            {
                // Read, aligned or not.
                if (random.Next(2) == 0)
                {
                    var blocks = random.Next(1, 65);
                    var offset = random.NextInt64(0, (size / 4096) - blocks + 1) * 4096;
                    AssertSameBytes(model.AsMemory((int)offset, blocks * 4096), await ReadAlignedAsync(replica, offset, blocks * 4096), offset, $"step {step} aligned read");
                }
                else
                {
                    var length = random.Next(1, 100_000);
                    var offset = random.NextInt64(0, size - length + 1);
                    AssertSameBytes(model.AsMemory((int)offset, length), await ReadAllAsync(replica, offset, length), offset, $"step {step} read");
                }
            }
            else if (op < 85)
            {
                var length = random.NextInt64(1, 512 * KiB);
                var offset = random.NextInt64(0, size - length + 1);
                if (random.Next(2) == 0)
                {
                    await replica.TrimAsync(offset, length, default);
                }
                else
                {
                    var flags = (random.Next(2) == 0 ? WriteZeroesFlags.NoHole : WriteZeroesFlags.None)
                        | (random.Next(2) == 0 ? WriteZeroesFlags.ForceUnitAccess : WriteZeroesFlags.None);
                    await replica.WriteZeroesAsync(offset, length, flags, default);
                }

                Array.Clear(model, (int)offset, (int)length);
            }
            else if (op < 88)
            {
                if (size < MaxSize)
                {
                    replica.Grow(Math.Min(MaxSize, size + (random.Next(1, 257) * 4096L)));
                }
            }
            else if (op < 92)
            {
                await replica.FlushAsync(default);
            }
            else
            {
                // Block status: every hole must be zero in the model.
                foreach (var (offset, extent) in await ExtentsAsync(replica, 0, size))
                {
                    if (extent.Flags.HasFlag(ExtentFlags.Hole))
                    {
                        Assert.Equal(ExtentFlags.Hole | ExtentFlags.Zero, extent.Flags);
                        AssertAllZero(model.AsMemory((int)offset, (int)extent.Length), $"step {step} hole at {offset}");
                    }
                }
            }
        }

        var finalSize = (int)replica.Size;
        AssertSameBytes(model.AsMemory(0, finalSize), await ReadAllAsync(replica, 0, finalSize), 0, "final contents");
        replica.Dispose();
        using var reopened = ReplicaFile.Open(path, new ReplicaFileOptions { ReadOnly = true, DirectIo = directIo });
        Assert.Equal(finalSize, reopened.Size);
        AssertSameBytes(model.AsMemory(0, finalSize), await ReadAlignedAsync(reopened, 0, finalSize), 0, "after reopen");
    }
}
