using Microsoft.Extensions.Logging.Abstractions;
using Slab.Common;
using Slab.Store;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.StoreRecovery;

/// <summary>The volume store on a real XFS drive (a file, formatted and mounted by DriveSet).</summary>
public sealed class VolumeStoreTests : IAsyncLifetime
{
    private readonly string _root = SlabNode.NewRoot();
    private readonly NodeIdentity _node = new() { NodeId = "node-a", NodeName = "a" };
    private VolumeStore? _store;

    private StoreOptions Options => new()
    {
        DataDirectory = Path.Combine(_root, "data"),
        RunDirectory = Path.Combine(_root, "run"),
        DrivePaths = [Path.Combine(_root, "drive.img")],
        MeasurePool = false,
        OvercommitRatio = 2,
    };

    private VolumeStore Store => _store!;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_root);
        using (var drive = new FileStream(Path.Combine(_root, "drive.img"), FileMode.CreateNew))
        {
            drive.SetLength(2L << 30);
        }

        _store = await VolumeStore.OpenAsync(Options, _node, NullLogger.Instance, default);
    }

    public async Task DisposeAsync()
    {
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }

        await HostCleanup.RemoveEverythingUnderAsync(_root);
    }

    private static VolumeRecord Draft(string name, long size) => new() { Id = Guid.NewGuid().ToString("N"), Name = name, SizeBytes = size, DriveId = "" };

    private async Task ReopenAsync()
    {
        await Store.DisposeAsync();
        _store = await VolumeStore.OpenAsync(Options, _node, NullLogger.Instance, default);
    }

    [Fact]
    public async Task Volumes_and_snapshots_survive_reopen_and_crash_leftovers_are_removed()
    {
        var a = await Store.CreateVolumeAsync(Draft("a", 64 << 20), null, default);
        a = await Store.CreateSnapshotAsync(a, "s1", default);
        var b = await Store.CreateVolumeAsync(Draft("b", 64 << 20), null, default);
        await Store.DeleteVolumeAsync(b, default);

        // What crashes leave: a create that never committed, a delete that committed, a snapshot
        // that never committed, a half-written metadata file.
        var volumes = Path.Combine(Store.GetPoolStatus().Drives[0].MountPath, "slab", "volumes");
        var uncommitted = Directory.CreateDirectory(Path.Combine(volumes, "00000000000000000000000000000001")).FullName;
        await File.WriteAllTextAsync(Path.Combine(uncommitted, "data"), "x");
        var tomb = Directory.CreateDirectory(Path.Combine(volumes, ".deleting-00000000000000000000000000000002")).FullName;
        var orphanSnapshot = Path.Combine(volumes, a.Id, "snapshots", "ffffffffffffffffffffffffffffffff");
        await File.WriteAllTextAsync(orphanSnapshot, "x");
        var tempMeta = Path.Combine(volumes, a.Id, "meta.json.tmp-12345678");
        await File.WriteAllTextAsync(tempMeta, "{ half");

        await ReopenAsync();
        var names = Store.ListVolumes().Select(v => v.Name).ToArray();
        Assert.Equal(["a"], names);
        Assert.Equal("s1", Store.FindVolume("a")!.Snapshots.Single().Name);
        Assert.False(Directory.Exists(uncommitted));
        Assert.False(Directory.Exists(tomb));
        Assert.False(File.Exists(orphanSnapshot));
        Assert.False(File.Exists(tempMeta));
    }

    [Fact]
    public async Task Names_are_unique_and_capacity_is_enforced()
    {
        await Store.CreateVolumeAsync(Draft("one", 1 << 30), null, default);
        var duplicate = await Assert.ThrowsAsync<SlabException>(() => Store.CreateVolumeAsync(Draft("one", 1 << 20), null, default));
        Assert.Equal(SlabErrorCode.AlreadyExists, duplicate.Code);

        // 2 GiB drive x overcommit 2: about 4 GiB provisionable, 1 GiB taken.
        var tooBig = await Assert.ThrowsAsync<SlabException>(() => Store.CreateVolumeAsync(Draft("big", 4L << 30), null, default));
        Assert.Equal(SlabErrorCode.ResourceExhausted, tooBig.Code);
        Assert.Null(Store.FindVolume("big"));
        Assert.Single(Store.ListVolumes());
    }

    [Fact]
    public async Task A_snapshot_copy_starts_as_a_reflink_of_its_basis_is_recorded_only_once_filled_and_leaves_nothing_when_it_fails()
    {
        var volume = await Store.CreateVolumeAsync(Draft("copies", 64 << 20), null, default);
        var snapshots = Path.Combine(Store.GetPoolStatus().Drives[0].MountPath, "slab", "volumes", volume.Id, "snapshots");
        SnapshotRecord Snapshot(string name, long size) => new() { Id = Guid.NewGuid().ToString("N"), Name = name, SizeBytes = size, Created = DateTimeOffset.UtcNow };
        var data = new byte[1 << 20];
        new Random(3).NextBytes(data);

        var s1 = Snapshot("s1", 64 << 20);
        volume = await Store.AddSnapshotCopyAsync(volume, s1, basis: null, async (copy, basis, ct) =>
        {
            Assert.Null(basis);
            Assert.Equal(64 << 20, copy.Size);
            Assert.Null(Store.FindVolume("copies")!.FindSnapshotById(s1.Id)); // not visible while filled
            await copy.WriteAsync(1 << 20, data, Block.BlockWriteFlags.None, ct);
        }, default);

        // The next one starts as s1's data (a reflink), grown to its own size (the volume grew meanwhile).
        var s2 = Snapshot("s2", 96 << 20);
        volume = await Store.AddSnapshotCopyAsync(volume, s2, s1, async (copy, basis, ct) =>
        {
            Assert.NotNull(basis);
            Assert.Equal(96 << 20, copy.Size);
            var read = new byte[1 << 20];
            await copy.ReadAsync(1 << 20, read, ct);
            Assert.Equal(data, read);
        }, default);
        Assert.Equal(["s1", "s2"], volume.Snapshots.Select(s => s.Name));

        var s3 = Snapshot("s3", 96 << 20);
        await Assert.ThrowsAsync<InvalidOperationException>(() => Store.AddSnapshotCopyAsync(volume, s3, s2, (_, _, _) => throw new InvalidOperationException("the holder went away"), default));
        Assert.Null(Store.FindVolume("copies")!.FindSnapshotById(s3.Id));
        Assert.False(File.Exists(Path.Combine(snapshots, s3.Id)));

        // A copy recorded already is a retry; a basis that is not a snapshot here is refused.
        await Store.AddSnapshotCopyAsync(volume, s2, null, (_, _, _) => throw new InvalidOperationException("must not be called"), default);
        var unknown = await Assert.ThrowsAsync<SlabException>(() => Store.AddSnapshotCopyAsync(volume, s3, Snapshot("gone", 1 << 20), (_, _, _) => Task.CompletedTask, default));
        Assert.Equal(SlabErrorCode.NotFound, unknown.Code);
        Assert.False(File.Exists(Path.Combine(snapshots, s3.Id)));

        await ReopenAsync();
        volume = Store.FindVolume("copies")!;
        Assert.Equal(["s1", "s2"], volume.Snapshots.Select(s => s.Name));
        using var reopened = Store.OpenSnapshot(volume, volume.Snapshots[1]);
        var back = new byte[1 << 20];
        await reopened.ReadAsync(1 << 20, back, default);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Snapshot_differences_are_the_extents_two_snapshots_no_longer_share()
    {
        var volume = await Store.CreateVolumeAsync(Draft("diff", 64 << 20), null, default);
        var data = new byte[1 << 20];
        new Random(4).NextBytes(data);
        using (var replica = Store.OpenReplica(volume))
        {
            for (var i = 0; i < 16; i++)
            {
                await replica.WriteAsync((long)i << 20, data, Block.BlockWriteFlags.None, default);
            }

            await replica.FlushAsync(default);
        }

        volume = await Store.CreateSnapshotAsync(volume, "s1", default);
        using (var replica = Store.OpenReplica(volume))
        {
            await replica.WriteAsync(5L << 20, new byte[4096], Block.BlockWriteFlags.None, default); // one block rewritten
            await replica.WriteAsync(40L << 20, data, Block.BlockWriteFlags.None, default); // 1 MiB where s1 has a hole
            await replica.TrimAsync(10L << 20, 1 << 20, default); // 1 MiB s1 has, gone
            await replica.FlushAsync(default);
        }

        volume = await Store.CreateSnapshotAsync(volume, "s2", default);
        var (s1, s2) = (volume.FindSnapshot("s1")!, volume.FindSnapshot("s2")!);
        var differing = Store.SnapshotDifferences(volume, s2.Id, s1.Id);

        bool Covers(long offset, long length) => differing.Any(r => r.Offset <= offset && r.Offset + r.Length >= offset + length);
        Assert.True(Covers(5L << 20, 4096), string.Join(", ", differing));
        Assert.True(Covers(40L << 20, 1 << 20), string.Join(", ", differing));
        Assert.True(Covers(10L << 20, 1 << 20), string.Join(", ", differing));
        Assert.True(differing.Sum(r => r.Length) <= 4L << 20, $"{differing.Sum(r => r.Length)} bytes differ: {string.Join(", ", differing)}");
        Assert.Empty(Store.SnapshotDifferences(volume, s1.Id, s1.Id));
        Assert.Equal(SlabErrorCode.NotFound, Assert.Throws<SlabException>(() => Store.SnapshotDifferences(volume, s2.Id, "nope")).Code);
    }

    [Fact]
    public async Task Snapshot_clone_and_restore_are_reflinks_with_the_right_data()
    {
        var volume = await Store.CreateVolumeAsync(Draft("data", 256 << 20), null, default);
        var first = new byte[1 << 20];
        new Random(1).NextBytes(first);
        using (var replica = Store.OpenReplica(volume))
        {
            for (var i = 0; i < 64; i++)
            {
                await replica.WriteAsync((long)i << 20, first, Block.BlockWriteFlags.None, default);
            }

            await replica.FlushAsync(default);
        }

        var usedBefore = Store.GetPoolStatus().UsedBytes;
        volume = await Store.CreateSnapshotAsync(volume, "snap", default);
        var usedAfter = Store.GetPoolStatus().UsedBytes;
        Assert.True(usedAfter - usedBefore < 8 << 20, $"a snapshot of 64 MiB of data costs {usedAfter - usedBefore} bytes");

        var second = new byte[1 << 20];
        new Random(2).NextBytes(second);
        using (var replica = Store.OpenReplica(volume))
        {
            await replica.WriteAsync(0, second, Block.BlockWriteFlags.None, default);
        }

        var clone = await Store.CreateVolumeAsync(Draft("clone", 256 << 20), new ReplicaSource(volume, volume.Snapshots[0]), default);
        var buffer = new byte[1 << 20];
        using (var replica = Store.OpenReplica(clone))
        {
            await replica.ReadAsync(0, buffer, default);
        }

        Assert.Equal(first, buffer);

        volume = await Store.RestoreSnapshotAsync(volume, volume.Snapshots[0], default);
        using (var replica = Store.OpenReplica(volume))
        {
            await replica.ReadAsync(0, buffer, default);
        }

        Assert.Equal(first, buffer);
    }
}
