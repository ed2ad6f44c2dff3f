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
