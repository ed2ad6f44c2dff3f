using System.Runtime.Versioning;
using Microsoft.Extensions.DependencyInjection;
using Slab.Common;
using Slab.Host;
using Xunit;
using static Slab.Tests.Host.HostTestEnvironment;

namespace Slab.Tests.Host;

/// <summary>
/// Real attachments (nbdfuse + loop) against a real NBD server; needs root, /dev/fuse and loop devices.
/// A 1 GiB nbdkit memory export stands in for slabd's ceiling-sized attach export.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class NbdFuseLoopAttacherTests : IAsyncLifetime
{
    private HostTestEnvironment _env = null!;

    public async Task InitializeAsync() => _env = await StartAsync();

    public async Task DisposeAsync() => await _env.DisposeAsync();

    [Fact]
    public async Task Attach_gives_a_loop_device_of_the_requested_size_and_detach_leaves_nothing()
    {
        var attached = await _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None);

        Assert.StartsWith("/dev/loop", attached.DevicePath, StringComparison.Ordinal);
        Assert.Equal(AttachMethod.NbdFuseLoop, attached.Method);
        Assert.Equal("nbdfuse-loop", attached.MethodName);
        Assert.Equal(128 * MiB, await BlockDeviceSizeAsync(attached.DevicePath));
        Assert.True(File.Exists(Path.Combine(attached.AttachDirectory, "state.json")));
        Assert.Equal(attached, await new NbdFuseLoopAttacher(_env.Options).GetAsync("vol1", CancellationToken.None));

        // A second attach of the same volume is refused, and a fresh instance (slabd restart) can detach.
        var again = await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None));
        Assert.Equal(HostAttachError.AlreadyAttached, again.Error);

        await new NbdFuseLoopAttacher(_env.Options).DetachAsync("vol1", CancellationToken.None);
        await _env.AssertNothingLeftAsync("vol1", attached.NbdfusePid);
        Assert.Null(await _env.Attacher.GetAsync("vol1", CancellationToken.None));
        var notAttached = await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.DetachAsync("vol1", CancellationToken.None));
        Assert.Equal(HostAttachError.NotAttached, notAttached.Error);
    }

    [Fact]
    public async Task Ext4_format_mount_write_unmount_is_clean()
    {
        var device = (await _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None)).DevicePath;
        var mount = _env.MountPath("ext4");

        Assert.Null(await _env.Filesystems.ProbeAsync(device, CancellationToken.None));
        await _env.Filesystems.FormatAsync(device, FilesystemType.Ext4, CancellationToken.None);
        Assert.Equal("ext4", await _env.Filesystems.ProbeAsync(device, CancellationToken.None));
        await _env.Filesystems.MountAsync(device, mount, FilesystemType.Ext4, [], CancellationToken.None);
        await _env.Filesystems.MountAsync(device, mount, FilesystemType.Ext4, [], CancellationToken.None); // idempotent
        Assert.True(await _env.Filesystems.IsMountedAsync(mount, CancellationToken.None));
        var payload = new byte[3 * 1024 * 1024];
        Random.Shared.NextBytes(payload);
        await File.WriteAllBytesAsync(Path.Combine(mount, "data.bin"), payload);
        await _env.Filesystems.UnmountAsync(mount, CancellationToken.None);
        Assert.False(await _env.Filesystems.IsMountedAsync(mount, CancellationToken.None));

        var fsck = await ExternalCommand.RunAsync("fsck.ext4", ["-n", "-f", device], CancellationToken.None);
        Assert.True(fsck.Succeeded, fsck.Diagnostic);

        // The data went through NBD: it is there after a remount.
        await _env.Filesystems.MountAsync(device, mount, FilesystemType.Ext4, [], CancellationToken.None);
        Assert.Equal(payload, await File.ReadAllBytesAsync(Path.Combine(mount, "data.bin")));
        await _env.Filesystems.UnmountAsync(mount, CancellationToken.None);
        await _env.Attacher.DetachAsync("vol1", CancellationToken.None);
        await _env.AssertNothingLeftAsync("vol1");
    }

    [Fact]
    public async Task Grow_changes_the_live_loop_device_and_ext4_follows()
    {
        var device = (await _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None)).DevicePath;
        var mount = _env.MountPath("grow");
        await _env.Filesystems.FormatAsync(device, FilesystemType.Ext4, CancellationToken.None);
        await _env.Filesystems.MountAsync(device, mount, FilesystemType.Ext4, [], CancellationToken.None);
        var before = await FilesystemSizeAsync(mount);

        var grown = await _env.Attacher.ResizeAsync("vol1", 256 * MiB, CancellationToken.None);

        Assert.Equal(256 * MiB, grown.SizeBytes);
        Assert.Equal(256 * MiB, await BlockDeviceSizeAsync(device));
        Assert.Equal(256 * MiB, (await new NbdFuseLoopAttacher(_env.Options).GetAsync("vol1", CancellationToken.None))!.SizeBytes);
        Assert.Equal(HostAttachError.InvalidArgument,
            (await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.ResizeAsync("vol1", 128 * MiB, CancellationToken.None))).Error);
        Assert.Equal(HostAttachError.InvalidArgument,
            (await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.ResizeAsync("vol1", 2048 * MiB, CancellationToken.None))).Error);

        try
        {
            await _env.Filesystems.GrowFilesystemAsync(device, mount, FilesystemType.Ext4, CancellationToken.None);
        }
        catch (HostAttachException ex) when (ex.Error == HostAttachError.GrowUnsupported)
        {
            // Containers without CAP_SYS_RESOURCE cannot resize ext4 online (EXT4_IOC_RESIZE_FS):
            // the typed error says so, and the offline path grows it instead.
            await _env.Filesystems.UnmountAsync(mount, CancellationToken.None);
            await _env.Filesystems.GrowFilesystemAsync(device, null, FilesystemType.Ext4, CancellationToken.None);
            await _env.Filesystems.MountAsync(device, mount, FilesystemType.Ext4, [], CancellationToken.None);
        }

        var after = await FilesystemSizeAsync(mount);
        Assert.True(after > before + (100 * MiB), $"df size {before} -> {after}");
        await _env.Filesystems.UnmountAsync(mount, CancellationToken.None);
        var fsck = await ExternalCommand.RunAsync("fsck.ext4", ["-n", "-f", device], CancellationToken.None);
        Assert.True(fsck.Succeeded, fsck.Diagnostic);
        await _env.Attacher.DetachAsync("vol1", CancellationToken.None);
        await _env.AssertNothingLeftAsync("vol1");
    }

    [Fact]
    public async Task Xfs_format_mount_and_grow_online()
    {
        // mkfs.xfs needs at least 300 MB.
        var device = (await _env.Attacher.AttachAsync(_env.Spec("vol1", 320 * MiB), CancellationToken.None)).DevicePath;
        var mount = _env.MountPath("xfs");
        await _env.Filesystems.FormatAsync(device, FilesystemType.Xfs, CancellationToken.None);
        Assert.Equal("xfs", await _env.Filesystems.ProbeAsync(device, CancellationToken.None));
        await _env.Filesystems.MountAsync(device, mount, FilesystemType.Xfs, [], CancellationToken.None);
        await File.WriteAllTextAsync(Path.Combine(mount, "hello.txt"), "hello");
        var before = await FilesystemSizeAsync(mount);

        await _env.Attacher.ResizeAsync("vol1", 512 * MiB, CancellationToken.None);
        Assert.Equal(512 * MiB, await BlockDeviceSizeAsync(device));
        await _env.Filesystems.GrowFilesystemAsync(device, mount, FilesystemType.Xfs, CancellationToken.None);

        var after = await FilesystemSizeAsync(mount);
        Assert.True(after > before + (150 * MiB), $"df size {before} -> {after}");
        Assert.Equal("hello", await File.ReadAllTextAsync(Path.Combine(mount, "hello.txt")));
        await _env.Filesystems.UnmountAsync(mount, CancellationToken.None);
        Assert.Equal(HostAttachError.GrowUnsupported,
            (await Assert.ThrowsAsync<HostAttachException>(() => _env.Filesystems.GrowFilesystemAsync(device, null, FilesystemType.Xfs, CancellationToken.None))).Error);
        await _env.Attacher.DetachAsync("vol1", CancellationToken.None);
        await _env.AssertNothingLeftAsync("vol1");
    }

    [Fact]
    public async Task Detach_refuses_while_mounted_then_succeeds_and_leaves_nothing()
    {
        var attached = await _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None);
        var mount = _env.MountPath("busy");
        await _env.Filesystems.FormatAsync(attached.DevicePath, FilesystemType.Ext4, CancellationToken.None);
        await _env.Filesystems.MountAsync(attached.DevicePath, mount, FilesystemType.Ext4, [], CancellationToken.None);

        var busy = await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.DetachAsync("vol1", CancellationToken.None));
        Assert.Equal(HostAttachError.Busy, busy.Error);
        Assert.Equal([mount], busy.MountPoints);
        Assert.Equal(attached.DevicePath, (await _env.Attacher.GetAsync("vol1", CancellationToken.None))!.DevicePath);

        // Formatting a mounted device is refused too.
        Assert.Equal(HostAttachError.Busy,
            (await Assert.ThrowsAsync<HostAttachException>(() => _env.Filesystems.FormatAsync(attached.DevicePath, FilesystemType.Ext4, CancellationToken.None))).Error);

        await _env.Filesystems.UnmountAsync(mount, CancellationToken.None);
        await _env.Attacher.DetachAsync("vol1", CancellationToken.None);
        await _env.AssertNothingLeftAsync("vol1", attached.NbdfusePid);
    }

    [Fact]
    public async Task Stale_recovery_after_a_crash_removes_everything()
    {
        var first = await _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None);
        var second = await _env.Attacher.AttachAsync(_env.Spec("vol2", 128 * MiB), CancellationToken.None);
        var mount = _env.MountPath("crashed");
        await _env.Filesystems.FormatAsync(first.DevicePath, FilesystemType.Ext4, CancellationToken.None);
        await _env.Filesystems.MountAsync(first.DevicePath, mount, FilesystemType.Ext4, [], CancellationToken.None);
        // A half-made attachment too: a directory with a pid file of no process and no state.
        Directory.CreateDirectory(Path.Combine(_env.AttachRoot, "vol3", "fuse"));
        await File.WriteAllTextAsync(Path.Combine(_env.AttachRoot, "vol3", "nbdfuse.pid"), "999999");

        // "slabd restarts": a fresh instance that made none of these.
        var recovery = await new NbdFuseLoopAttacher(_env.Options).RecoverAsync(CancellationToken.None);
        Assert.Empty(recovery.Kept);
        var removals = recovery.Removed;

        Assert.Equal(["vol1", "vol2", "vol3"], removals.Select(r => r.VolumeName));
        Assert.All(removals, r => Assert.True(r.Complete, string.Join("; ", r.Actions)));
        Assert.Contains(removals[0].Actions, a => a.Contains(mount, StringComparison.Ordinal));
        Assert.Contains(removals[0].Actions, a => a.Contains(first.DevicePath, StringComparison.Ordinal));
        Assert.False(await _env.Filesystems.IsMountedAsync(mount, CancellationToken.None));
        await _env.AssertNothingLeftAsync("vol1", first.NbdfusePid);
        await _env.AssertNothingLeftAsync("vol2", second.NbdfusePid);
        await _env.AssertNothingLeftAsync("vol3");

        // Idempotent: nothing left to do, and the volume can be attached again.
        Assert.Empty((await new NbdFuseLoopAttacher(_env.Options).RecoverAsync(CancellationToken.None)).Removed);
        var again = await new NbdFuseLoopAttacher(_env.Options).AttachAsync(_env.Spec("vol1", 128 * MiB), CancellationToken.None);
        Assert.Equal("ext4", await _env.Filesystems.ProbeAsync(again.DevicePath, CancellationToken.None));
    }

    [Fact]
    public async Task Failed_attach_leaves_nothing()
    {
        var badSocket = _env.Spec("vol1", 128 * MiB) with { NbdUnixSocket = Path.Combine(_env.Root, "no-such.sock") };
        var failed = await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.AttachAsync(badSocket, CancellationToken.None));
        Assert.Equal(HostAttachError.DeviceFailed, failed.Error);
        Assert.Contains("no-such.sock", failed.Message, StringComparison.Ordinal);
        await _env.AssertNothingLeftAsync("vol1");

        // Fails after nbdfuse is serving: the export (1 GiB) is smaller than the device asked for.
        var tooBig = await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.AttachAsync(_env.Spec("vol2", 2048 * MiB), CancellationToken.None));
        Assert.Equal(HostAttachError.InvalidArgument, tooBig.Error);
        await _env.AssertNothingLeftAsync("vol2");

        Assert.Equal(HostAttachError.InvalidArgument,
            (await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.AttachAsync(_env.Spec("../etc", 128 * MiB), CancellationToken.None))).Error);
        Assert.Equal(HostAttachError.InvalidArgument,
            (await Assert.ThrowsAsync<HostAttachException>(() => _env.Attacher.AttachAsync(_env.Spec("vol4", 1000), CancellationToken.None))).Error);
        Assert.Empty(Directory.Exists(_env.AttachRoot) ? Directory.GetFileSystemEntries(_env.AttachRoot) : []);
    }

    [Fact]
    public async Task Detach_of_a_cancelled_attach_finds_nothing()
    {
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => _env.Attacher.AttachAsync(_env.Spec("vol1", 128 * MiB), cancelled.Token));
        await _env.AssertNothingLeftAsync("vol1");
    }

    [Fact]
    public void Registration_resolves_the_host_layer()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddHostAttach(_env.Options with { PreferredMethod = AttachMethodPreference.Auto }, recoverOnStart: false);
        using var provider = services.BuildServiceProvider();

        var attacher = provider.GetRequiredService<IBlockDeviceAttacher>();
        Assert.NotNull(provider.GetRequiredService<IFilesystemManager>());
        var expected = File.Exists("/dev/nbd0") && File.Exists("/usr/sbin/nbd-client") ? AttachMethod.KernelNbd : AttachMethod.NbdFuseLoop;
        Assert.Equal(expected, attacher.Method);
        Assert.Equal(AttachMethod.KernelNbd, HostAttachFactory.ChooseMethod(AttachMethodPreference.KernelNbd).Method);
    }
}
