using System.Text.Json;
using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>Nodes that share one address and tell themselves apart by <c>--port-base</c>.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterPortBaseTests
{
    private const int Block = 4096;

    [Fact]
    public async Task Nodes_on_one_address_with_port_bases_form_a_cluster_attach_remotely_and_release_attachments_when_they_stop()
    {
        HostCommand.RequireTool("dd", "coreutils");
        var address = LocalCluster.UniqueLoopback()(1);
        var first = 20_000 + (Random.Shared.Next(0, 90) * 100);
        int PortBase(int i) => first + ((i - 1) * 10);
        await using var cluster = await LocalCluster.StartAsync(4, voters: 3, addressOf: _ => address, portBaseOf: PortBase);

        var nodes = (await cluster[4].CliJsonAsync("cluster", "list")).EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
        Assert.Equal(4, nodes.Count);
        foreach (var i in cluster.Indexes)
        {
            var node = nodes[LocalCluster.NameOf(i)];
            Assert.Equal("online", node.GetProperty("status").GetString());
            Assert.Equal($"{address}:{PortBase(i)}", node.GetProperty("apiEndpoint").GetString());
            Assert.Equal($"{address}:{PortBase(i) + 2}", node.GetProperty("dataEndpoint").GetString());
            Assert.Equal($"{address}:{PortBase(i) + 3}", node.GetProperty("raftEndpoint").GetString());
            Assert.Equal(i <= 3, node.GetProperty("kvdb").GetBoolean());
            Assert.Equal($"http://{address}:{PortBase(i) + 5}/metrics", cluster[i].MetricsUrl); // the metrics port is P+5
        }

        // Placed on node-1 from the non-voter, used from node-3 over node-1's replication port P+2.
        var name = LocalCluster.UniqueName("portbase");
        await cluster[4].CliOkAsync("volume", "create", name, "--size", "1", "--nodes", "node-1");
        var device = (await cluster[3].CliOkAsync("host", "attach", name)).Trim();
        var data = TestData.Pattern(Block, 9);
        await DirectBlockIo.WriteCheckedAsync(device, 0, data);
        Assert.Equal(data, await DirectBlockIo.ReadAsync(device, 0, Block));

        // node-3 stops cleanly: it detaches and records that, so node-2 attaches at once, without a
        // takeover (the epoch stays) and without waiting for node-3 to be seen offline.
        var epoch = LocalCluster.EpochOf(LocalCluster.First(await cluster[1].CliJsonAsync("volume", "inspect", name)));
        Assert.Equal(0, await cluster[3].StopAsync());
        var again = (await cluster[2].CliOkAsync("host", "attach", name)).Trim();
        var volume = LocalCluster.First(await cluster[1].CliJsonAsync("volume", "inspect", name));
        Assert.Equal("node-2", volume.GetProperty("attachment").GetProperty("nodeName").GetString());
        Assert.Equal(epoch, LocalCluster.EpochOf(volume));
        Assert.Equal(data, await DirectBlockIo.ReadAsync(again, 0, Block));
        await cluster[2].CliOkAsync("host", "detach", name);
        await cluster[2].CliOkAsync("volume", "delete", name);
    }
}
