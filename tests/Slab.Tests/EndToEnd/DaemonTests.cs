using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>slabd's command line, start-up checks and restart recovery, with real processes.</summary>
public sealed class DaemonTests
{
    private static Task<HostCommand.Result> SlabdAsync(params string[] args)
        => HostCommand.RunAsync("dotnet", [SlabNode.SlabdDll, .. args], TimeSpan.FromMinutes(2));

    [Theory]
    [InlineData("unknown option --bogus", "--bogus")]
    [InlineData("no drives given", "--data-dir", "/tmp/x", "--run-dir", "/tmp/y")]
    [InlineData("--data-dir and --run-dir are required", "--drive", "/tmp/some-drive")]
    [InlineData("--api-port must be a port number", "--dev", "--api-port", "abc")]
    [InlineData("--overcommit-ratio must be a number", "--dev", "--overcommit-ratio", "0")]
    [InlineData("--data-dir needs a value", "--dev", "--data-dir")]
    [InlineData("unexpected argument 'extra'", "--dev", "extra")]
    public async Task Bad_command_lines_exit_2_with_a_message(string expected, params string[] args)
    {
        var result = await SlabdAsync(args);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(expected, result.Stderr, StringComparison.Ordinal);
        Assert.Contains("Usage:", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Help_exits_0()
    {
        var result = await SlabdAsync("--help");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("--drive PATH", result.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_drive_is_refused()
    {
        var root = SlabNode.NewRoot();
        try
        {
            var result = await SlabdAsync("--data-dir", root + "/d", "--run-dir", root + "/r", "--drive", root + "/nope.img", "--api-port", "0", "--nbd-port", "0");
            Assert.Equal(1, result.ExitCode);
            Assert.Contains("does not exist", result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            await HostCleanup.RemoveEverythingUnderAsync(root);
        }
    }

    [Fact]
    public async Task A_drive_with_a_filesystem_is_refused_unless_wiped()
    {
        var root = SlabNode.NewRoot();
        Directory.CreateDirectory(root);
        try
        {
            var drive = Path.Combine(root, "drive.img");
            using (var file = new FileStream(drive, FileMode.CreateNew))
            {
                file.SetLength(1L << 30);
            }

            await HostCommand.CheckedAsync("mkfs.ext4", "-q", "-F", drive);
            string[] args = ["--data-dir", root + "/d", "--run-dir", root + "/r", "--drive", drive, "--api-port", "0", "--nbd-port", "0", "--skip-pool-benchmark"];
            var refused = await SlabdAsync(args);
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains("carries a ext4 filesystem signature", refused.Stderr, StringComparison.Ordinal);
            Assert.Contains("--wipe-drives", refused.Stderr, StringComparison.Ordinal);

            // Nothing was changed: the ext4 filesystem is still there.
            var probe = await HostCommand.RunAsync("blkid", ["-p", "-o", "value", "-s", "TYPE", drive]);
            Assert.Equal("ext4", probe.Stdout.Trim());
        }
        finally
        {
            await HostCleanup.RemoveEverythingUnderAsync(root);
        }
    }

    [Fact]
    public async Task Wipe_drives_takes_a_foreign_drive_and_restart_recovers_volumes()
    {
        await using var node = await SlabNode.StartAsync(driveBytes: 4L << 30);
        await node.CliOkAsync("volume", "create", "keep1", "--size", "1");
        await node.CliOkAsync("volume", "create", "keep2", "--size", "2", "--label", "app=db");
        await node.CliOkAsync("volume", "snapshot", "create", "keep1", "--name", "s1");
        Assert.Equal(0, await node.StopAsync());

        await node.StartProcessAsync();
        var list = await node.CliJsonAsync("volume", "list");
        var names = list.EnumerateArray().Select(v => v.GetProperty("name").GetString()!).Order().ToArray();
        Assert.Equal(["keep1", "keep2"], names);
        var snaps = await node.CliJsonAsync("volume", "snapshot", "list", "keep1");
        Assert.Equal("s1", snaps.EnumerateArray().Single().GetProperty("name").GetString());
        Assert.Equal(0, await node.StopAsync());

        // A new identity makes the drive foreign: refused, then taken with --wipe-drives.
        File.Delete(Path.Combine(node.DataDirectory, "node.json"));
        var refused = await SlabdAsync([.. node.DaemonArguments().Skip(1)]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("belongs to another Slab node", refused.Stderr, StringComparison.Ordinal);

        await node.StartProcessAsync("--wipe-drives");
        var after = await node.CliJsonAsync("volume", "list");
        Assert.Equal(0, after.GetArrayLength());
    }

    [Fact]
    public async Task Sigterm_stops_cleanly_and_unmounts_the_drive()
    {
        await using var node = await SlabNode.StartAsync(driveBytes: 2L << 30);
        Assert.Contains(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(node.RunDirectory + "/drives/", StringComparison.Ordinal));
        Assert.Equal(0, await node.StopAsync());
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains(node.RunDirectory, StringComparison.Ordinal));
        Assert.Contains("slabd stopped cleanly", node.Log, StringComparison.Ordinal);
    }
}
