using System.Text.Json;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>Volumes attached as real block devices (nbdfuse + loop here), formatted, mounted, grown.</summary>
public sealed class AttachTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private SlabNode Node => fixture.Node;

    private static string Name(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    private static async Task<long> DeviceSizeAsync(string device)
        => long.Parse((await HostCommand.CheckedAsync("blockdev", "--getsize64", device)).Trim());

    private async Task<JsonElement> InspectAsync(string name)
    {
        var json = await Node.CliJsonAsync("volume", "inspect", name);
        return json.ValueKind == JsonValueKind.Array ? json[0] : json;
    }

    [Fact]
    public async Task Attach_gives_a_block_device_that_mkfs_and_fsck_accept()
    {
        var name = Name("raw");
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--fs", "none");
        var device = (await Node.CliOkAsync("host", "attach", name)).Trim();
        Assert.StartsWith("/dev/", device, StringComparison.Ordinal);
        Assert.Equal(1L << 30, await DeviceSizeAsync(device));

        await HostCommand.CheckedAsync("mkfs.ext4", "-q", "-F", device);
        var fsck = await HostCommand.RunAsync("fsck.ext4", ["-n", "-f", device]);
        Assert.True(fsck.ExitCode == 0, fsck.ToString());
        Assert.Contains($"attached on test-node", await Node.CliOkAsync("volume", "list"), StringComparison.Ordinal);

        var delete = await Node.CliAsync("volume", "delete", name);
        Assert.NotEqual(0, delete.ExitCode);
        Assert.Contains("detach it first", delete.Stderr, StringComparison.Ordinal);

        await Node.CliOkAsync("host", "detach", name);
        Assert.False(File.Exists(device) && (await HostCommand.RunAsync("losetup", [device])).ExitCode == 0, "the loop device is released");
        Assert.False((await InspectAsync(name)).TryGetProperty("attachment", out _));
        await Node.CliOkAsync("volume", "delete", name);
    }

    [Fact]
    public async Task Mount_formats_on_first_use_and_data_survives_detach()
    {
        var name = Name("fs");
        var mount = Path.Combine(Node.Root, "mnt-" + name);
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        await Node.CliOkAsync("host", "mount", name, mount);
        await File.WriteAllTextAsync(Path.Combine(mount, "hello.txt"), "hello slab");
        await HostCommand.CheckedAsync("sync", "-f", Path.Combine(mount, "hello.txt"));

        var attachment = (await InspectAsync(name)).GetProperty("attachment");
        Assert.Equal(mount, attachment.GetProperty("mountPaths")[0].GetString());
        var detachMounted = await Node.CliAsync("host", "detach", name);
        Assert.NotEqual(0, detachMounted.ExitCode);
        Assert.Contains("unmount it first", detachMounted.Stderr, StringComparison.Ordinal);

        await Node.CliOkAsync("host", "unmount", name, mount);
        await Node.CliOkAsync("host", "detach", name);
        await Node.CliOkAsync("host", "mount", name, mount);
        Assert.Equal("hello slab", await File.ReadAllTextAsync(Path.Combine(mount, "hello.txt")));
        Assert.True((await InspectAsync(name)).GetProperty("formatted").GetBoolean());
        await Node.CliOkAsync("host", "unmount", name, mount);
        await Node.CliOkAsync("host", "detach", name);
    }

    [Fact]
    public async Task Growing_a_mounted_xfs_volume_grows_the_device_and_the_filesystem_online()
    {
        var name = Name("growxfs");
        var mount = Path.Combine(Node.Root, "mnt-" + name);
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--fs", "xfs");
        await Node.CliOkAsync("host", "mount", name, mount);
        var device = (await InspectAsync(name)).GetProperty("attachment").GetProperty("devicePath").GetString()!;
        var before = new DriveInfo(mount).TotalSize;

        await Node.CliOkAsync("volume", "update", name, "--size", "3");
        Assert.Equal(3L << 30, await DeviceSizeAsync(device));
        var after = new DriveInfo(mount).TotalSize;
        Assert.True(after > before * 2, $"filesystem grew from {before} to {after}");

        await Node.CliOkAsync("host", "unmount", name, mount);
        await Node.CliOkAsync("host", "detach", name);
    }

    [Fact]
    public async Task Growing_a_mounted_ext4_volume_grows_the_device_and_the_filesystem_by_the_next_mount()
    {
        // Online ext4 grow needs CAP_SYS_RESOURCE; where slabd has it the filesystem grows at once,
        // otherwise at the next mount. Either way, after a remount it has the new size.
        var name = Name("growext4");
        var mount = Path.Combine(Node.Root, "mnt-" + name);
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--fs", "ext4");
        await Node.CliOkAsync("host", "mount", name, mount);
        await File.WriteAllTextAsync(Path.Combine(mount, "keep.txt"), "kept");
        var device = (await InspectAsync(name)).GetProperty("attachment").GetProperty("devicePath").GetString()!;
        var before = new DriveInfo(mount).TotalSize;

        await Node.CliOkAsync("volume", "update", name, "--size", "3");
        Assert.Equal(3L << 30, await DeviceSizeAsync(device));
        await Node.CliOkAsync("host", "unmount", name, mount);
        await Node.CliOkAsync("host", "mount", name, mount);
        var after = new DriveInfo(mount).TotalSize;
        Assert.True(after > before * 2, $"filesystem grew from {before} to {after}");
        Assert.Equal("kept", await File.ReadAllTextAsync(Path.Combine(mount, "keep.txt")));

        await Node.CliOkAsync("host", "unmount", name, mount);
        await Node.CliOkAsync("host", "detach", name);
    }

    [Fact]
    public async Task Mount_and_attach_refuse_bad_requests()
    {
        var name = Name("badmount");
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--fs", "none");
        var noFs = await Node.CliAsync("host", "mount", name, Path.Combine(Node.Root, "m-none"));
        Assert.NotEqual(0, noFs.ExitCode);
        Assert.Contains("no filesystem", noFs.Stderr, StringComparison.Ordinal);
        var relative = await Node.CliAsync("host", "mount", name, "relative/path");
        Assert.NotEqual(0, relative.ExitCode);
        var unknown = await Node.CliAsync("host", "attach", "no-such-volume");
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Contains("not found", unknown.Stderr, StringComparison.Ordinal);
        var notAttached = await Node.CliAsync("host", "detach", name);
        Assert.NotEqual(0, notAttached.ExitCode);
        Assert.Contains("not attached", notAttached.Stderr, StringComparison.Ordinal);
    }
}
