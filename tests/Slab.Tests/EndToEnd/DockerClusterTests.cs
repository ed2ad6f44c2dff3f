using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Docker on a 3-node local cluster: each node's slabd serves the plugin on its own socket; a
/// dockerd on node 1 and another on node 2, each knowing its node's plugin.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class DockerClusterTests
{
    [Fact]
    public async Task AVolumeWrittenThroughOneNodesDockerIsReadThroughAnothersAfterTheFirstNodeDies()
    {
        var sockets = Path.Combine("/tmp", "dkc-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(sockets);
        string SocketOf(int i) => Path.Combine(sockets, $"node-{i}.sock");
        try
        {
            await using var cluster = await LocalCluster.StartAsync(3, extraArgumentsOf: i => ["--docker-plugin-socket", SocketOf(i)]);
            await using var docker1 = await Dockerd.StartAsync(SocketOf(1));
            await using var docker2 = await Dockerd.StartAsync(SocketOf(2));
            var name = LocalCluster.UniqueName("dc");

            await docker1.OkAsync("volume", "create", "-d", docker1.Driver, "--opt", "size=2G", "--opt", "repl=2", name);
            var volume = await cluster.InspectAsync(3, name);
            Assert.Equal(2, LocalCluster.ReplicaNodes(volume).Count);

            // Written through node 1's Docker by a container that stays (the volume stays attached on node 1).
            var writer = LocalCluster.UniqueName("w");
            await docker1.OkAsync(
                "run", "-d", "--name", writer, "--network", "none", "-v", $"{name}:/data", Dockerd.Image,
                "sh", "-c", "echo payload > /data/f && sync && echo synced && sleep 600");
            await Poll.UntilAsync(async () => (await docker1.RunAsync("logs", writer)).Stdout.Contains("synced", StringComparison.Ordinal), TimeSpan.FromSeconds(90), "the writer's sync");

            // A second host while the first is alive: the cluster's attach refusal, in Docker's error.
            var refused = await docker2.RunContainerAsync(["--volume-driver", docker2.Driver, "-v", $"{name}:/data"], "cat", "/data/f");
            Assert.NotEqual(0, refused.ExitCode);
            Assert.Contains("is attached on node-1", refused.Stderr, StringComparison.Ordinal);

            // Node 1 dies; node 2's Docker takes the volume over once node 1 is seen offline.
            await cluster[1].KillAsync();
            HostCommand.Result read = default;
            await Poll.UntilAsync(
                async () =>
                {
                    read = await docker2.RunContainerAsync(["--volume-driver", docker2.Driver, "-v", $"{name}:/data"], "cat", "/data/f");
                    return read.ExitCode == 0;
                },
                TimeSpan.FromSeconds(120),
                "node 2's Docker to mount the volume after node 1's death");
            Assert.Equal("payload", read.Stdout.Trim());

            var after = await cluster.InspectAsync(2, name);
            Assert.False(after.TryGetProperty("attachment", out _), after.ToString());
        }
        finally
        {
            Directory.Delete(sockets, recursive: true);
        }
    }
}
