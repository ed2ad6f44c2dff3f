using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// <c>slabd --keep-attachments</c>: a mounted volume outlives slabd. Writes issued while slabd is
/// stopped or killed wait and complete once it is back; the next slabd adopts the attachment with
/// its mount; detach afterwards leaves nothing behind.
/// </summary>
public sealed class KeepAttachmentsTests
{
    private const string Keep = "--keep-attachments";

    [Fact]
    public async Task A_mounted_volume_outlives_a_stop_and_a_kill_of_slabd_and_writes_made_meanwhile_land()
    {
        await using var node = await SlabNode.StartAsync(4L << 30, Keep);
        var mount = Path.Combine(node.Root, "mnt");
        await node.CliOkAsync("volume", "create", "kept", "--size", "1", "--fs", "ext4");
        await node.CliOkAsync("host", "mount", "kept", mount);
        var device = (await InspectAsync(node)).GetProperty("attachment").GetProperty("devicePath").GetString();
        await WriteDurablyAsync(Path.Combine(mount, "before.bin"), TestData.Pattern(256 * 1024, 1));

        // 1. A clean stop leaves the attachment; a write while slabd is away waits for it.
        Assert.Equal(0, await node.StopAsync());
        Assert.Contains("attachments stay (--keep-attachments)", node.Log, StringComparison.Ordinal);
        var whileStopped = WriteDurablyAsync(Path.Combine(mount, "stopped.bin"), TestData.Pattern(256 * 1024, 2));
        await node.StartProcessAsync(Keep);
        await whileStopped.WaitAsync(TimeSpan.FromSeconds(90));
        Assert.Contains("adopted its attachment", node.Log, StringComparison.Ordinal);
        await AssertAttachedAsync(node, device, mount);

        // 2. A crash (kill -9) too.
        await node.KillAsync();
        var whileKilled = WriteDurablyAsync(Path.Combine(mount, "killed.bin"), TestData.Pattern(256 * 1024, 3));
        await node.StartProcessAsync(Keep);
        await whileKilled.WaitAsync(TimeSpan.FromSeconds(90));
        await AssertAttachedAsync(node, device, mount);

        // 3. The adopted attachment is an ordinary one: unmount and detach leave nothing, and the
        //    three files are on the volume.
        await node.CliOkAsync("host", "unmount", "kept", mount);
        await node.CliOkAsync("host", "detach", "kept");
        Assert.DoesNotContain(node.RunDirectory + "/attach", await HostCommand.CheckedAsync("losetup", "-a"), StringComparison.Ordinal);
        Assert.DoesNotContain(node.RunDirectory + "/attach", await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
        Assert.DoesNotContain(mount, await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
        Assert.DoesNotContain(Processes(), argv => argv.StartsWith("nbdkit", StringComparison.Ordinal) && argv.Contains(node.Root, StringComparison.Ordinal));
        await node.CliOkAsync("host", "mount", "kept", mount);
        Assert.Equal(TestData.Pattern(256 * 1024, 1), await File.ReadAllBytesAsync(Path.Combine(mount, "before.bin")));
        Assert.Equal(TestData.Pattern(256 * 1024, 2), await File.ReadAllBytesAsync(Path.Combine(mount, "stopped.bin")));
        Assert.Equal(TestData.Pattern(256 * 1024, 3), await File.ReadAllBytesAsync(Path.Combine(mount, "killed.bin")));
        await node.CliOkAsync("host", "unmount", "kept", mount);
        await node.CliOkAsync("host", "detach", "kept");
    }

    [Fact]
    public async Task Without_the_option_a_restart_removes_what_a_kept_attachment_left()
    {
        await using var node = await SlabNode.StartAsync(4L << 30, Keep);
        var mount = Path.Combine(node.Root, "mnt");
        await node.CliOkAsync("volume", "create", "dropped", "--size", "1", "--fs", "ext4");
        await node.CliOkAsync("host", "mount", "dropped", mount);
        await node.KillAsync();

        await node.StartProcessAsync();
        Assert.Contains("Removed stale attachment of volume dropped", node.Log, StringComparison.Ordinal);
        Assert.False((await InspectAsync(node, "dropped")).TryGetProperty("attachment", out _));
        Assert.DoesNotContain(node.RunDirectory + "/attach", await HostCommand.CheckedAsync("losetup", "-a"), StringComparison.Ordinal);
        Assert.DoesNotContain(mount, await File.ReadAllTextAsync("/proc/mounts"), StringComparison.Ordinal);
        Assert.DoesNotContain(Processes(), argv => argv.StartsWith("nbdkit", StringComparison.Ordinal) && argv.Contains(node.Root, StringComparison.Ordinal));
    }

    private static async Task AssertAttachedAsync(SlabNode node, string? device, string mount)
    {
        var attachment = (await InspectAsync(node)).GetProperty("attachment");
        Assert.Equal(device, attachment.GetProperty("devicePath").GetString());
        Assert.Equal(mount, attachment.GetProperty("mountPaths")[0].GetString());
    }

    private static async Task<JsonElement> InspectAsync(SlabNode node, string volume = "kept")
    {
        var json = await node.CliJsonAsync("volume", "inspect", volume);
        return json.ValueKind == JsonValueKind.Array ? json[0] : json;
    }

    /// <summary>Writes and fsyncs a file on a thread of its own (the fsync blocks while slabd is away).</summary>
    internal static Task WriteDurablyAsync(string path, byte[] data) => Task.Run(() =>
    {
        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None);
        file.Write(data);
        file.Flush(flushToDisk: true);
    });

    private static IEnumerable<string> Processes() => HostCleanup.Processes().Select(p => p.CommandLine);
}
