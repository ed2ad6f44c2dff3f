using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Frontend.Fuse;
using Slab.Tests.Infrastructure;
using Slab.Tests.Nbd;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.Fuse;

/// <summary>
/// slabd's own FUSE file server over a test target, with a real direct-I/O loop device on the file
/// as slabd's attach makes it: data, fsync, discard and zeroing reach the target; target failures
/// reach the device as I/O errors; stopping leaves no mount.
/// </summary>
public sealed class FuseFileServerTests : IAsyncLifetime
{
    private const int Block = 4096;
    private const long Size = 64L << 20;
    private readonly string _root = Path.Combine("/tmp", "slab-fuse-" + Guid.NewGuid().ToString("N")[..8]);

    private string MountPoint => Path.Combine(_root, "fuse");

    public Task InitializeAsync()
    {
        Directory.CreateDirectory(MountPoint);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await HostCleanup.RemoveEverythingUnderAsync(_root);

    private async Task<(FuseFileServer Server, string Loop)> ServeAsync(IBlockTarget target)
    {
        var server = FuseFileServer.Mount(MountPoint, "vol", target, new FuseFileServerOptions { Workers = 4 }, NullLogger.Instance);
        Assert.Equal(Size, new FileInfo(server.FilePath).Length);
        var loop = (await HostCommand.CheckedAsync("losetup", "--find", "--show", "--direct-io=on", server.FilePath)).Trim();
        Assert.Equal("1", (await File.ReadAllTextAsync($"/sys/block/{Path.GetFileName(loop)}/loop/dio")).Trim());
        return (server, loop);
    }

    private async Task StopAsync(FuseFileServer server, string loop)
    {
        await HostCommand.CheckedAsync("losetup", "-d", loop);
        await server.DisposeAsync();
        Assert.DoesNotContain(MountPoint, await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Writes_reads_fsync_discard_and_zeroing_through_a_loop_device_reach_the_target()
    {
        var target = new TestTarget(Size);
        var (server, loop) = await ServeAsync(target);

        // Direct writes (with fsync) of 4 KiB and 1 MiB, read back through the device and on the target.
        var small = TestData.Pattern(Block, 1);
        var large = TestData.Pattern(1 << 20, 2);
        await DirectBlockIo.WriteCheckedAsync(loop, 8 * Block, small);
        await DirectBlockIo.WriteCheckedAsync(loop, 4L << 20, large, blockSize: 1 << 20);
        Assert.True(target.Inner.FlushCount > 0, "the fsync reached the target as a flush");
        Assert.Equal(small, await DirectBlockIo.ReadAsync(loop, 8 * Block, Block));
        Assert.Equal(large, await DirectBlockIo.ReadAsync(loop, 4L << 20, 1 << 20, blockSize: 1 << 20));
        var stored = new byte[1 << 20];
        await target.Inner.ReadAsync(4L << 20, stored, CancellationToken.None);
        Assert.Equal(large, stored);

        // Discard punches the range out of the target; zeroing zeroes it.
        await HostCommand.CheckedAsync("blkdiscard", "--offset", (4L << 20).ToString(), "--length", (1L << 20).ToString(), loop);
        await target.Inner.ReadAsync(4L << 20, stored, CancellationToken.None);
        Assert.Equal(new byte[1 << 20], stored);
        await HostCommand.CheckedAsync("blkdiscard", "--zeroout", "--offset", (8L * Block).ToString(), "--length", Block.ToString(), loop);
        Assert.Equal(new byte[Block], await DirectBlockIo.ReadAsync(loop, 8 * Block, Block));

        await StopAsync(server, loop);
    }

    [Fact]
    public async Task A_failing_target_is_an_io_error_on_the_device_and_the_server_goes_on()
    {
        var target = new TestTarget(Size) { WriteFailure = new BlockTargetException(BlockError.IOError, "disk on fire") };
        var (server, loop) = await ServeAsync(target);

        var failed = await DirectBlockIo.WriteAsync(loop, 0, TestData.Pattern(Block, 3));
        Assert.NotEqual(0, failed.ExitCode);

        target.WriteFailure = null;
        var data = TestData.Pattern(Block, 4);
        await DirectBlockIo.WriteCheckedAsync(loop, 0, data);
        Assert.Equal(data, await DirectBlockIo.ReadAsync(loop, 0, Block));

        // Reads the target completes later (the test target's reads are asynchronous) are answered too.
        target.ReadsNeedPermit = true;
        var read = DirectBlockIo.ReadAsync(loop, 0, Block);
        target.Permits.Release(64);
        Assert.Equal(data, await read);
        target.ReadsNeedPermit = false;

        await StopAsync(server, loop);
    }

    [Fact]
    public async Task The_file_is_the_only_entry_and_keeps_its_size()
    {
        var target = new TestTarget(Size);
        var server = FuseFileServer.Mount(MountPoint, "vol", target, new FuseFileServerOptions { Workers = 2 }, NullLogger.Instance);
        try
        {
            Assert.Equal(["vol"], Directory.GetFileSystemEntries(MountPoint).Select(Path.GetFileName));
            Assert.False(File.Exists(Path.Combine(MountPoint, "other")));
            var truncate = await HostCommand.RunAsync("truncate", ["-s", "1M", server.FilePath]);
            Assert.NotEqual(0, truncate.ExitCode);
            Assert.Equal(Size, new FileInfo(server.FilePath).Length);
        }
        finally
        {
            await server.DisposeAsync();
        }

        Assert.DoesNotContain(MountPoint, await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
    }
}
