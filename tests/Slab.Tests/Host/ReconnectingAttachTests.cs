using Slab.Common;
using Slab.Host;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using static Slab.Tests.Host.HostTestEnvironment;

namespace Slab.Tests.Host;

/// <summary>
/// nbdfuse + loop attachments that outlive the server behind them (<see cref="HostOptions.ReconnectTimeout"/>):
/// a real nbdkit file server stands in for slabd and is stopped and started again under a live
/// device; fresh attacher instances stand in for the next slabd's start-up recovery.
/// </summary>
public sealed class ReconnectingAttachTests : IAsyncLifetime
{
    private HostTestEnvironment _env = null!;
    private string _image = "";
    private int _server;

    private const int OneMiB = 1024 * 1024;

    private string ServerSocket => Path.Combine(_env.Root, "file.sock");

    private HostOptions Options => _env.Options with { ReconnectTimeout = TimeSpan.FromSeconds(60) };

    public async Task InitializeAsync()
    {
        _env = await StartAsync();
        _image = Path.Combine(_env.Root, "disk.img");
        await using (var file = new FileStream(_image, FileMode.CreateNew))
        {
            file.SetLength(256 * MiB);
        }

        _server = await StartFileServerAsync();
    }

    public async Task DisposeAsync()
    {
        if (_server != 0)
        {
            await StopNbdkitAsync(_server);
        }

        await _env.DisposeAsync();
    }

    private Task<int> StartFileServerAsync() => StartNbdkitAsync(_env.Root, "file.sock", "file.pid", "file", _image);

    private AttachSpec Spec(string volume) => new(volume, ServerSocket, "", 64 * MiB);

    [Fact]
    public async Task Io_waits_while_the_server_is_away_and_completes_once_it_is_back()
    {
        var attacher = new NbdFuseLoopAttacher(Options);
        var attached = await attacher.AttachAsync(Spec("vol1"), CancellationToken.None);
        Assert.True(attached.OutlivesDaemon);
        Assert.NotNull(attached.RelayPid);
        var before = TestData.Pattern(OneMiB, 1);
        await DirectBlockIo.WriteCheckedAsync(attached.DevicePath, 0, before);

        // The server goes away; a write (O_DIRECT, then fsync) is issued while it is gone.
        await StopNbdkitAsync(_server);
        _server = 0;
        File.Delete(ServerSocket);
        var during = TestData.Pattern(OneMiB, 2);
        var write = DirectBlockIo.WriteAsync(attached.DevicePath, MiB, during);
        Assert.False(write.IsCompleted);
        _server = await StartFileServerAsync();

        var result = await write;
        Assert.True(result.ExitCode == 0, $"the write across the restart failed: {result}\n{await RelayLogAsync("vol1")}");
        Assert.Equal(before, await DirectBlockIo.ReadAsync(attached.DevicePath, 0, OneMiB));
        Assert.Equal(during, await DirectBlockIo.ReadAsync(attached.DevicePath, MiB, OneMiB));
        // On the server's disk, not just somewhere in between (the fsync reached it).
        await using (var image = new FileStream(_image, FileMode.Open, FileAccess.Read, FileShare.ReadWrite))
        {
            var stored = new byte[2 * OneMiB];
            image.ReadExactly(stored);
            Assert.Equal([.. before, .. during], stored);
        }

        await attacher.DetachAsync("vol1", CancellationToken.None);
        await _env.AssertNothingLeftAsync("vol1", attached.NbdfusePid);
    }

    [Fact]
    public async Task Recovery_keeps_an_intact_attachment_with_its_mounts_and_removes_a_broken_one()
    {
        var kept = await new NbdFuseLoopAttacher(Options).AttachAsync(Spec("vol1"), CancellationToken.None);
        var mount = _env.MountPath("kept");
        await _env.Filesystems.FormatAsync(kept.DevicePath, FilesystemType.Ext4, CancellationToken.None);
        await _env.Filesystems.MountAsync(kept.DevicePath, mount, FilesystemType.Ext4, [], CancellationToken.None);
        await new NbdFuseLoopAttacher(Options).RecordMountsAsync("vol1", [mount], CancellationToken.None);
        var broken = await new NbdFuseLoopAttacher(Options).AttachAsync(Spec("vol2"), CancellationToken.None);
        HostNative.KillHard(broken.RelayPid!.Value); // its relay is gone: the device can never reach the server again
        await HostNative.WaitForProcessExitAsync(broken.RelayPid.Value, TimeSpan.FromSeconds(10), CancellationToken.None);

        // "slabd restarts".
        var next = new NbdFuseLoopAttacher(Options);
        var recovery = await next.RecoverAsync(CancellationToken.None);

        var survivor = Assert.Single(recovery.Kept);
        Assert.Equal("vol1", survivor.VolumeName);
        Assert.Equal(kept.DevicePath, survivor.DevicePath);
        Assert.Equal([mount], survivor.MountPaths);
        Assert.Equal(kept.RelayPid, survivor.RelayPid);
        Assert.Equal(["vol2"], recovery.Removed.Select(r => r.VolumeName));
        Assert.True(recovery.Removed[0].Complete, string.Join("; ", recovery.Removed[0].Actions));
        await _env.AssertNothingLeftAsync("vol2", broken.NbdfusePid);

        // The kept one still works, is the new instance's own (a second recovery leaves it alone),
        // and its data went through.
        await File.WriteAllTextAsync(Path.Combine(mount, "after.txt"), "still here");
        Assert.Empty((await next.RecoverAsync(CancellationToken.None)).Kept);
        Assert.True(File.Exists(Path.Combine(_env.AttachRoot, "vol1", "state.json")));

        // A recovery that does not keep attachments (slabd without --keep-attachments) removes it, mounts and all.
        var removal = Assert.Single((await new NbdFuseLoopAttacher(_env.Options).RecoverAsync(CancellationToken.None)).Removed);
        Assert.True(removal.Complete, string.Join("; ", removal.Actions));
        Assert.False(await _env.Filesystems.IsMountedAsync(mount, CancellationToken.None));
        await _env.AssertNothingLeftAsync("vol1", kept.NbdfusePid);
    }

    [Fact]
    public async Task Abandoning_a_kept_attachment_unmounts_and_removes_it()
    {
        var kept = await new NbdFuseLoopAttacher(Options).AttachAsync(Spec("vol1"), CancellationToken.None);
        var mount = _env.MountPath("abandoned");
        await _env.Filesystems.FormatAsync(kept.DevicePath, FilesystemType.Ext4, CancellationToken.None);
        await _env.Filesystems.MountAsync(kept.DevicePath, mount, FilesystemType.Ext4, [], CancellationToken.None);

        var next = new NbdFuseLoopAttacher(Options);
        Assert.Single((await next.RecoverAsync(CancellationToken.None)).Kept);
        var removal = await next.AbandonAsync("vol1", CancellationToken.None);

        Assert.True(removal.Complete, string.Join("; ", removal.Actions));
        Assert.Contains(removal.Actions, a => a.Contains(mount, StringComparison.Ordinal));
        Assert.Contains(removal.Actions, a => a.Contains("relay", StringComparison.Ordinal));
        Assert.False(await _env.Filesystems.IsMountedAsync(mount, CancellationToken.None));
        await _env.AssertNothingLeftAsync("vol1", kept.NbdfusePid);
        var notAttached = await Assert.ThrowsAsync<HostAttachException>(() => next.DetachAsync("vol1", CancellationToken.None));
        Assert.Equal(HostAttachError.NotAttached, notAttached.Error);
    }

    [Fact]
    public async Task A_failed_attach_through_the_relay_leaves_nothing()
    {
        var attacher = new NbdFuseLoopAttacher(Options);
        var missing = Spec("vol1") with { NbdUnixSocket = Path.Combine(_env.Root, "no-such.sock") };
        var failed = await Assert.ThrowsAsync<HostAttachException>(() => attacher.AttachAsync(missing, CancellationToken.None));
        Assert.Equal(HostAttachError.DeviceFailed, failed.Error);
        await _env.AssertNothingLeftAsync("vol1");

        // Larger than the export: refused after nbdfuse serves, relay removed too.
        var tooBig = Spec("vol2") with { DeviceSizeBytes = 512 * MiB };
        Assert.Equal(HostAttachError.InvalidArgument, (await Assert.ThrowsAsync<HostAttachException>(() => attacher.AttachAsync(tooBig, CancellationToken.None))).Error);
        await _env.AssertNothingLeftAsync("vol2");
    }

    private async Task<string> RelayLogAsync(string volume)
    {
        var log = Path.Combine(_env.AttachRoot, volume, "relay.log");
        return File.Exists(log) ? await File.ReadAllTextAsync(log) : "(no relay log)";
    }
}
