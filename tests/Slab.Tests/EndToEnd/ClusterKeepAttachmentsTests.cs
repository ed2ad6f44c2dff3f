using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// <c>--keep-attachments</c> in a cluster: a node's slabd crashes under a mounted replicated volume
/// and the restarted one adopts the attachment (writes made meanwhile land on both replicas); a
/// node whose attachment another node took over while it was down removes its device instead of
/// adopting it.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterKeepAttachmentsTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    [Fact]
    public async Task A_restarted_node_adopts_its_attachment_unless_another_node_took_it_over_meanwhile()
    {
        await using var cluster = await LocalCluster.StartAsync(3, extraArgumentsOf: _ => ["--keep-attachments"]);
        var kept = LocalCluster.UniqueName("kept");
        var taken = LocalCluster.UniqueName("taken");
        await cluster[1].CliOkAsync("volume", "create", kept, "--size", "1", "--repl", "2", "--nodes", "node-1,node-2", "--fs", "ext4");
        await cluster[1].CliOkAsync("volume", "create", taken, "--size", "1", "--nodes", "node-2");
        var mount = Path.Combine(cluster[1].Root, "mnt");
        await cluster[1].CliOkAsync("host", "mount", kept, mount);
        await KeepAttachmentsTests.WriteDurablyAsync(Path.Combine(mount, "before.bin"), TestData.Pattern(128 * 1024, 1));
        var staleDevice = (await cluster[3].CliOkAsync("host", "attach", taken)).Trim();
        Assert.Equal(0, (await DirectBlockIo.WriteAsync(staleDevice, 0, TestData.Pattern(Block, 2))).ExitCode);

        // 1. node-1's slabd crashes under the mount; a write made meanwhile waits, then lands.
        await cluster[1].KillAsync();
        var meanwhile = KeepAttachmentsTests.WriteDurablyAsync(Path.Combine(mount, "meanwhile.bin"), TestData.Pattern(128 * 1024, 3));
        await cluster.RestartAsync(1);
        await meanwhile.WaitAsync(TimeSpan.FromSeconds(90));
        Assert.Contains($"Volume {kept}: adopted its attachment", cluster[1].Log, StringComparison.Ordinal);
        var volume = await cluster.InspectAsync(2, kept);
        Assert.Equal("node-1", volume.GetProperty("attachment").GetProperty("nodeName").GetString());
        Assert.Equal(mount, (await cluster.InspectAsync(1, kept)).GetProperty("attachment").GetProperty("mountPaths")[0].GetString());

        // 2. node-3 crashes; while it is down node-2 takes its attachment over.
        await cluster[3].KillAsync();
        await Poll.UntilAsync(async () => (await cluster.StatusesAsync(2))["node-3"] == "offline", TimeSpan.FromSeconds(30), "node-3 offline");
        var device = (await cluster[2].CliOkAsync("host", "attach", taken)).Trim();
        Assert.Equal(0, (await DirectBlockIo.WriteAsync(device, 0, TestData.Pattern(Block, 4))).ExitCode);
        await cluster.RestartAsync(3);
        await Poll.UntilAsync(
            () => Task.FromResult(cluster[3].Log.Contains($"Volume {taken}: removed its attachment", StringComparison.Ordinal)),
            TimeSpan.FromSeconds(60),
            "node-3 gives up the attachment node-2 took over");
        output.WriteLine(cluster[3].Log.Split('\n').First(l => l.Contains($"Volume {taken}: removed", StringComparison.Ordinal)));
        Assert.Contains("node node-2 has it attached now", cluster[3].Log, StringComparison.Ordinal);
        Assert.DoesNotContain(cluster[3].RunDirectory + "/attach", await HostCommand.CheckedAsync("losetup", "-a"), StringComparison.Ordinal);
        Assert.Equal(TestData.Pattern(Block, 4), await DirectBlockIo.ReadAsync(device, 0, Block));
        await cluster[2].CliOkAsync("host", "detach", taken);

        // 3. Both files of the adopted mount are on the volume, on both replicas' nodes: read them
        //    back after moving the mount to node-2.
        await cluster[1].CliOkAsync("host", "unmount", kept, mount);
        await cluster[1].CliOkAsync("host", "detach", kept);
        Assert.DoesNotContain(cluster[1].RunDirectory + "/attach", await HostCommand.CheckedAsync("losetup", "-a"), StringComparison.Ordinal);
        var elsewhere = Path.Combine(cluster[2].Root, "mnt");
        await cluster[2].CliOkAsync("host", "mount", kept, elsewhere);
        Assert.Equal(TestData.Pattern(128 * 1024, 1), await File.ReadAllBytesAsync(Path.Combine(elsewhere, "before.bin")));
        Assert.Equal(TestData.Pattern(128 * 1024, 3), await File.ReadAllBytesAsync(Path.Combine(elsewhere, "meanwhile.bin")));
        await cluster[2].CliOkAsync("host", "unmount", kept, elsewhere);
        await cluster[2].CliOkAsync("host", "detach", kept);
    }
}
