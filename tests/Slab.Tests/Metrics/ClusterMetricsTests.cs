using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.Metrics;

/// <summary>The cluster figures of /metrics on a real two-node cluster (one KVDB voter, one non-voting node).</summary>
public sealed class ClusterMetricsTests
{
    [Fact]
    public async Task Each_node_reports_the_leader_the_nodes_online_and_the_volumes_by_state()
    {
        await using var cluster = await LocalCluster.StartAsync(2, voters: 1);
        var name = LocalCluster.UniqueName("cm");
        await cluster[2].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2");

        foreach (var i in cluster.Indexes)
        {
            var url = cluster[i].MetricsUrl ?? throw new InvalidOperationException($"node {i} logged no metrics address:\n{cluster[i].Log}");
            Assert.StartsWith($"http://{cluster.Address(i)}:", url, StringComparison.Ordinal); // bound to --advertise
            PrometheusScrape? scrape = null;
            // A non-voter's read copy follows the leader by long-poll: wait for it to have the volume.
            await Poll.UntilAsync(
                async () => (scrape = await PrometheusScrape.FetchAsync(url)).Find("slab_cluster_volumes", ("state", "up")) is [{ Value: 1 }],
                TimeSpan.FromSeconds(30),
                $"node {i} to report the new volume up");

            Assert.Equal(i == 1 ? 1 : 0, scrape!.Value("slab_cluster_leader", ("leader", LocalCluster.NameOf(1))));
            Assert.Single(scrape.Find("slab_cluster_leader"));
            Assert.Equal(2, scrape.Value("slab_cluster_nodes"));
            Assert.Equal(2, scrape.Value("slab_cluster_nodes_online"));
            Assert.Equal(1, scrape.Value("slab_cluster_has_quorum"));
            Assert.Equal(0, scrape.Value("slab_cluster_volumes", ("state", "degraded")));
            Assert.Equal(0, scrape.Value("slab_cluster_volumes", ("state", "down")));
            Assert.True(scrape.Value("slab_cluster_state_revision") >= 3); // two registrations and the create
            Assert.True(scrape.Value("slab_node_replica_connections") >= 0);
            Assert.Equal(0, scrape.Value("slab_alerts", ("type", "replica_degraded"), ("severity", "critical")));
            Assert.Equal(0, scrape.Value("slab_alerts", ("type", "no_quorum"), ("severity", "critical")));
            if (i == 1)
            {
                var commit = scrape.Value("slab_cluster_raft_commit_index");
                Assert.True(commit >= scrape.Value("slab_cluster_state_revision"), $"commit index {commit}");
                Assert.True(scrape.Value("slab_cluster_raft_last_applied_index") >= 1);
            }
            else
            {
                Assert.Empty(scrape.Find("slab_cluster_raft_commit_index")); // not a voter: no Raft log
            }
        }
    }
}
