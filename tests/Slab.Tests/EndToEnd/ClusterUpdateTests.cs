using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// volume update of a replicated cluster volume with real slabd processes: asked of a node where it
/// is not attached, the grow is carried out by the attached node (forwarded over the node-to-node
/// API), which grows every replica and its device; label changes from two nodes both survive. The
/// public NBD socket serves a cluster volume only where it is attached (one controller, one fence).
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterUpdateTests
{
    [Fact]
    public async Task A_grow_or_qos_change_asked_of_another_node_is_carried_out_by_the_attached_node()
    {
        await using var cluster = await LocalCluster.StartAsync(3);
        var name = LocalCluster.UniqueName("grow");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2", "--nodes", "node-1,node-2", "--label", "app=db");
        var volumeId = (await cluster.InspectAsync(1, name)).GetProperty("id").GetString()!;
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();

        await cluster[3].CliOkAsync("volume", "update", name, "--size", "2", "--label", "tier=gold");
        Assert.Equal(2L << 30, long.Parse((await HostCommand.CheckedAsync("blockdev", "--getsize64", device)).Trim(), System.Globalization.CultureInfo.InvariantCulture));
        foreach (var i in new[] { 1, 2 })
        {
            Assert.Equal(2L << 30, new FileInfo(LocalCluster.ReplicaFile(cluster[i], volumeId)).Length);
        }

        await cluster[2].CliOkAsync("volume", "update", name, "--label", "owner=ops");
        var volume = await cluster.InspectAsync(3, name);
        Assert.Equal((2L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture), volume.GetProperty("spec").GetProperty("sizeBytes").GetString());
        var labels = volume.GetProperty("spec").GetProperty("labels");
        Assert.Equal(("db", "gold", "ops"), (labels.GetProperty("app").GetString(), labels.GetProperty("tier").GetString(), labels.GetProperty("owner").GetString()));

        // QoS limits asked of a node where the volume is not attached reach its controller on node-1,
        // online; the counters come from there too, whichever node is asked.
        await cluster[3].CliOkAsync("volume", "update", name, "--max_iops", "0,300", "--max_bandwidth", "50");
        await DirectBlockIo.WriteCheckedAsync(device, 0, new byte[8192]);
        var stats = await cluster[2].CliJsonAsync("volume", "stats", name);
        Assert.True(stats.GetProperty("active").GetBoolean());
        Assert.Equal("node-1", stats.GetProperty("nodeName").GetString());
        Assert.True(long.Parse(stats.GetProperty("writes").GetProperty("operations").GetString()!, System.Globalization.CultureInfo.InvariantCulture) >= 1);
        var limits = stats.GetProperty("limits");
        Assert.Equal("300", limits.GetProperty("maxWriteIops").GetString());
        Assert.Equal("50000000", limits.GetProperty("maxReadBytesPerSecond").GetString());
        Assert.Equal("300", (await cluster.InspectAsync(2, name)).GetProperty("spec").GetProperty("limits").GetProperty("maxWriteIops").GetString());
        var badLimit = await cluster[3].CliAsync("volume", "update", name, "--max_iops", "x");
        Assert.NotEqual(0, badLimit.ExitCode);
        Assert.Contains("--max_iops", badLimit.Stderr, StringComparison.Ordinal);

        var shrink = await cluster[3].CliAsync("volume", "update", name, "--size", "1");
        Assert.NotEqual(0, shrink.ExitCode);
        Assert.Contains("shrinking to 1 GiB is not supported", shrink.Stderr, StringComparison.Ordinal);
        var badLabel = await cluster[3].CliAsync("volume", "update", name, "--label", "no good!=x");
        Assert.NotEqual(0, badLabel.ExitCode);
        Assert.Contains("invalid label key", badLabel.Stderr, StringComparison.Ordinal);

        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].CliOkAsync("volume", "delete", name);
    }

    [Fact]
    public async Task The_public_nbd_socket_serves_a_cluster_volume_only_where_it_is_attached()
    {
        HostCommand.RequireTool("nbdinfo", "libnbd-bin");
        await using var cluster = await LocalCluster.StartAsync(2);
        var name = LocalCluster.UniqueName("nbd");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2");

        // Both nodes hold a replica; neither may open a second controller beside the attached one.
        var refused = await HostCommand.RunAsync("nbdinfo", ["--size", cluster[2].NbdUri(name)]);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("only while it is attached here", cluster[2].Log, StringComparison.Ordinal);

        await cluster[1].CliOkAsync("host", "attach", name);
        Assert.Equal((1L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture), (await HostCommand.CheckedAsync("nbdinfo", "--size", cluster[1].NbdUri(name))).Trim());
        Assert.NotEqual(0, (await HostCommand.RunAsync("nbdinfo", ["--size", cluster[2].NbdUri(name)])).ExitCode);

        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].CliOkAsync("volume", "delete", name);
    }
}
