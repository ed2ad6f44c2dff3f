using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Storage-level fencing with real slabd processes: a node that holds an attachment freezes (SIGSTOP),
/// another node takes the attachment over, and when the frozen node wakes up its controller's writes
/// carry the old epoch and the replica's node refuses them.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterTakeoverTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    [Fact]
    public async Task A_frozen_holders_attachment_is_taken_over_and_its_late_writes_are_fenced()
    {
        HostCommand.RequireTool("dd", "coreutils");
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("takeover");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--nodes", "node-2");

        // Attached on node-3, which holds no replica: its controller talks to node-2 over TCP.
        var staleDevice = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        var first = TestData.Pattern(Block, 1);
        Assert.Equal(0, (await DirectBlockIo.WriteAsync(staleDevice, 0, first)).ExitCode);
        var epochBefore = LocalCluster.EpochOf(await cluster.InspectAsync(1, name));

        // A live holder keeps its attachment.
        var refused = await cluster[1].CliAsync("host", "attach", name);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("attached on node-3", refused.Stderr, StringComparison.Ordinal);

        string device;
        var second = TestData.Pattern(Block, 2);
        cluster[3].Suspend();
        try
        {
            await Poll.UntilAsync(async () => (await cluster.StatusesAsync(1))["node-3"] == "offline", TimeSpan.FromSeconds(30), "node-3 offline");

            // node-3 looks dead: node-1 takes the attachment over, which bumps the epoch.
            device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
            var taken = await cluster.InspectAsync(1, name);
            Assert.Equal("node-1", taken.GetProperty("attachment").GetProperty("nodeName").GetString());
            var epochAfter = LocalCluster.EpochOf(taken);
            Assert.True(epochAfter > epochBefore, $"epoch {epochAfter} after the takeover, {epochBefore} before");
            output.WriteLine($"taken over: epoch {epochBefore} -> {epochAfter}");

            // The new holder sees what the old one wrote and writes on.
            Assert.Equal(first, await DirectBlockIo.ReadAsync(device, 0, Block));
            Assert.Equal(0, (await DirectBlockIo.WriteAsync(device, 0, second)).ExitCode);
        }
        finally
        {
            cluster[3].Resume();
        }

        await Poll.UntilAsync(async () => (await cluster.StatusesAsync(1))["node-3"] == "online", TimeSpan.FromSeconds(30), "node-3 online again");

        // node-3 woke up still attached, with a controller on the old epoch: node-2's replica refuses its writes.
        var late = await DirectBlockIo.WriteAsync(staleDevice, Block, TestData.Pattern(Block, 3));
        output.WriteLine($"late write from node-3: {late}");
        Assert.NotEqual(0, late.ExitCode);
        var lateOverwrite = await DirectBlockIo.WriteAsync(staleDevice, 0, TestData.Pattern(Block, 4));
        Assert.NotEqual(0, lateOverwrite.ExitCode);

        // node-3 says so in its log once it has caught up with the cluster state.
        await Poll.UntilAsync(
            () => cluster[3].Log.Contains($"Volume {name} was taken over by node node-1", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30),
            "node-3 logs that its attachment was taken over");

        // Nothing of it reached the volume.
        Assert.Equal(second, await DirectBlockIo.ReadAsync(device, 0, Block));
        Assert.Equal(new byte[Block], await DirectBlockIo.ReadAsync(device, Block, Block));

        // node-3 tears down its fenced device; node-1's attachment is untouched.
        await cluster[3].CliOkAsync("host", "detach", name);
        Assert.Equal("node-1", (await cluster.InspectAsync(3, name)).GetProperty("attachment").GetProperty("nodeName").GetString());
        Assert.Equal(second, await DirectBlockIo.ReadAsync(device, 0, Block));

        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].CliOkAsync("volume", "delete", name);
    }
}
