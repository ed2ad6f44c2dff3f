using Slab.Block;
using Slab.Store;
using Slab.Tests.Infrastructure;
using Xunit;
using static Slab.Tests.Store.StoreTestData;

namespace Slab.Tests.Store;

public sealed class ReflinkTests
{
    [Fact]
    public async Task A_clone_shares_data_costs_no_space_and_does_not_see_later_writes()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        var source = xfs.PathOf("volume");
        var clonePath = xfs.PathOf("volume@snap");
        using var replica = ReplicaFile.Create(source, 128 * MiB);
        var data = RandomBytes(new Random(21), 64 * MiB);
        for (var offset = 0; offset < data.Length; offset += 8 * MiB)
        {
            await WriteAlignedAsync(replica, offset, data.AsMemory(offset, 8 * MiB));
        }

        await replica.FlushAsync(default);
        var freeBefore = xfs.AvailableBytes;

        Reflink.CloneFile(source, clonePath);

        var cost = freeBefore - xfs.AvailableBytes;
        Assert.True(cost < 1 * MiB, $"the clone of 64 MiB used {cost} bytes");
        using var snapshot = ReplicaFile.Open(clonePath, new ReplicaFileOptions { ReadOnly = true });
        Assert.Equal(replica.Size, snapshot.Size);
        AssertSameBytes(data, await ReadAlignedAsync(snapshot, 0, data.Length), 0, "clone");
        var extents = await ExtentsAsync(snapshot, 0, snapshot.Size);
        Assert.Equal((64L * MiB, new BlockExtent(64 * MiB, ExtentFlags.Hole | ExtentFlags.Zero)), extents[^1]);

        // Copy-on-write: later writes to the original (aligned and unaligned) don't reach the clone.
        await WriteAlignedAsync(replica, 0, RandomBytes(new Random(22), 1 * MiB));
        await replica.WriteAsync((10 * MiB) + 3, new byte[] { 1, 2, 3 }, BlockWriteFlags.None, default);
        await replica.TrimAsync(20 * MiB, 4 * MiB, default);
        AssertSameBytes(data, await ReadAllAsync(snapshot, 0, data.Length), 0, "clone after writes to the original");
        Assert.Equal(new byte[] { 1, 2, 3 }, await ReadAllAsync(replica, (10 * MiB) + 3, 3));
    }

    [Fact]
    public async Task CloneFile_refuses_an_existing_destination_and_leaves_it_alone()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        ReplicaFile.Create(xfs.PathOf("a"), 1 * MiB).Dispose();
        await File.WriteAllBytesAsync(xfs.PathOf("b"), [7, 7, 7]);
        var ex = Assert.Throws<LinuxFileException>(() => Reflink.CloneFile(xfs.PathOf("a"), xfs.PathOf("b")));
        Assert.Equal(17, ex.Errno); // EEXIST
        Assert.Equal(new byte[] { 7, 7, 7 }, await File.ReadAllBytesAsync(xfs.PathOf("b")));
        Assert.Equal(2, Assert.Throws<LinuxFileException>(() => Reflink.CloneFile(xfs.PathOf("missing"), xfs.PathOf("c"))).Errno);
        Assert.False(File.Exists(xfs.PathOf("c")));
    }

    [Fact]
    public async Task CloneOver_replaces_the_destination_with_the_source()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        var snapshotData = RandomBytes(new Random(31), 2 * MiB);
        using (var volume = ReplicaFile.Create(xfs.PathOf("volume"), 4 * MiB))
        {
            await WriteAlignedAsync(volume, 0, snapshotData);
        }

        Reflink.CloneFile(xfs.PathOf("volume"), xfs.PathOf("snap"));
        using (var volume = ReplicaFile.Open(xfs.PathOf("volume"), ReplicaFileOptions.Default))
        {
            await volume.WriteAsync(100, RandomBytes(new Random(32), 1 * MiB), BlockWriteFlags.None, default);
            volume.Grow(8 * MiB);
        }

        // Restore the volume from the snapshot: size and contents come back.
        Reflink.CloneOver(xfs.PathOf("snap"), xfs.PathOf("volume"));
        using (var restored = ReplicaFile.Open(xfs.PathOf("volume"), ReplicaFileOptions.Default))
        {
            Assert.Equal(4 * MiB, restored.Size);
            AssertSameBytes(snapshotData, await ReadAllAsync(restored, 0, snapshotData.Length), 0, "restored volume");
        }

        // CloneOver onto a path that does not exist yet creates it.
        Reflink.CloneOver(xfs.PathOf("snap"), xfs.PathOf("clone"));
        Assert.Equal(4 * MiB, new FileInfo(xfs.PathOf("clone")).Length);

        // No temporary files are left behind.
        Assert.Equal(["clone", "snap", "volume"], Directory.GetFiles(xfs.MountPoint).Select(f => Path.GetFileName(f)!).Order().ToArray());
    }

    [Fact]
    public async Task Cloning_across_filesystems_is_a_typed_not_supported_error_and_leaves_nothing()
    {
        await using var xfs = await XfsScratch.CreateAsync();
        ReplicaFile.Create(xfs.PathOf("a"), 1 * MiB).Dispose();
        var elsewhere = Directory.CreateTempSubdirectory("slab-reflink-");
        try
        {
            var destination = Path.Combine(elsewhere.FullName, "clone");
            var ex = Assert.Throws<ReflinkNotSupportedException>(() => Reflink.CloneFile(xfs.PathOf("a"), destination));
            Assert.Contains(ex.Errno, new[] { 18, 95, 22 }); // EXDEV, EOPNOTSUPP, EINVAL
            Assert.False(File.Exists(destination));

            Assert.Throws<ReflinkNotSupportedException>(() => Reflink.CloneOver(xfs.PathOf("a"), destination));
            Assert.Empty(Directory.GetFileSystemEntries(elsewhere.FullName));
        }
        finally
        {
            elsewhere.Delete(recursive: true);
        }
    }
}
