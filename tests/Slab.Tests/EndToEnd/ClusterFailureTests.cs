extern alias cli;
using System.Collections.Concurrent;
using System.Text.Json;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using V1 = cli::Slab.Api.V1;

namespace Slab.Tests.EndToEnd;

/// <summary>The control plane under failure: the Raft leader killed mid-burst, a network partition.</summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterFailureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Killing_the_leader_during_concurrent_creates_loses_and_duplicates_nothing()
    {
        HostCommand.RequireTool("nbdinfo", "libnbd-bin");
        await using var cluster = await LocalCluster.StartAsync(4);
        var leader = await cluster.LeaderAsync(1);
        var clients = cluster.Indexes.ToDictionary(i => i, i => new V1.Volumes.VolumesClient(ApiChannel.ForUnixSocket(cluster[i].ApiSocket)));
        var prefix = "burst-" + Guid.NewGuid().ToString("N")[..4];
        var names = Enumerable.Range(0, 50).Select(k => $"{prefix}-{k:00}").ToArray();
        var acknowledged = new ConcurrentBag<string>();
        var failed = new ConcurrentDictionary<string, StatusCode>();
        var tenDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        async Task CreateAsync(int k)
        {
            var via = (k % cluster.Count) + 1;
            try
            {
                await clients[via].CreateAsync(
                    new V1.CreateVolumeRequest { Name = names[k], Spec = new V1.VolumeSpec { SizeBytes = 64 << 20 } },
                    deadline: DateTime.UtcNow.AddSeconds(60));
                acknowledged.Add(names[k]);
                if (acknowledged.Count >= 10)
                {
                    tenDone.TrySetResult();
                }
            }
            catch (RpcException e)
            {
                failed[names[k]] = e.StatusCode;
            }
        }

        var burst = Task.WhenAll(Enumerable.Range(0, names.Length).Select(k => Task.Run(() => CreateAsync(k))));
        await tenDone.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await cluster[leader].KillAsync();
        await burst.WaitAsync(TimeSpan.FromSeconds(180));
        output.WriteLine($"leader node-{leader} killed; {acknowledged.Count} acknowledged, {failed.Count} failed: " +
            string.Join(", ", failed.GroupBy(f => f.Value).Select(g => $"{g.Key} x{g.Count()}")));

        // A failure is a clear status, never a silent success; no client saw a duplicate.
        Assert.DoesNotContain(failed.Values, code => code is StatusCode.AlreadyExists or StatusCode.Internal or StatusCode.Unknown);

        // Callers retry what failed on a surviving node: each retry creates the volume or finds the first attempt applied.
        var survivor = cluster.Indexes.First(i => i != leader);
        foreach (var name in failed.Keys)
        {
            await Poll.UntilAsync(
                async () =>
                {
                    try
                    {
                        await clients[survivor].CreateAsync(new V1.CreateVolumeRequest { Name = name, Spec = new V1.VolumeSpec { SizeBytes = 64 << 20 } });
                        return true;
                    }
                    catch (RpcException e) when (e.StatusCode == StatusCode.AlreadyExists)
                    {
                        return true;
                    }
                    catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
                    {
                        return false; // a new leader is still being elected
                    }
                },
                TimeSpan.FromSeconds(60),
                $"a retried create of {name}");
        }

        // The killed leader comes back and catches up; every node agrees on exactly the 50 volumes.
        await cluster.RestartAsync(leader);
        await cluster.WaitUntilAllOnlineAsync();
        foreach (var i in cluster.Indexes)
        {
            await Poll.UntilAsync(
                async () => (await clients[i].EnumerateAsync(new V1.EnumerateVolumesRequest())).Volumes.Count(v => v.Name.StartsWith(prefix, StringComparison.Ordinal)) == names.Length,
                TimeSpan.FromSeconds(60),
                $"node-{i} to list all {names.Length} volumes");
            var listed = (await clients[i].EnumerateAsync(new V1.EnumerateVolumesRequest())).Volumes.Where(v => v.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            Assert.Equal(names, listed.Select(v => v.Name).Order(StringComparer.Ordinal));
            Assert.All(listed, v => Assert.Single(v.Replicas));
        }

        // Nothing half-created: each volume's replica exists on the node the state places it on, and no node keeps a replica the state lacks.
        var volumes = (await clients[1].EnumerateAsync(new V1.EnumerateVolumesRequest())).Volumes.Where(v => v.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        var ids = (await cluster.ListNodesAsync(1)).ToDictionary(n => n.GetProperty("id").GetString()!, n => int.Parse(n.GetProperty("name").GetString()!["node-".Length..], System.Globalization.CultureInfo.InvariantCulture));
        foreach (var i in cluster.Indexes)
        {
            var expected = volumes.Where(v => ids[v.Replicas[0].NodeId] == i).Select(v => v.Name).Order(StringComparer.Ordinal).ToList();
            await Poll.UntilAsync(
                async () => (await LocalReplicasAsync(cluster[i], prefix)).SequenceEqual(expected),
                TimeSpan.FromSeconds(60),
                $"node-{i}'s local replicas to be exactly {expected.Count} volumes placed on it");
        }
    }

    [Fact]
    public async Task A_dead_voter_is_replaced_by_a_new_one_and_the_cluster_keeps_a_majority()
    {
        await using var cluster = await LocalCluster.StartAsync(3);
        Assert.Equal(0, await cluster[3].StopAsync());
        var replacement = await cluster.AddNodeAsync(kvdb: true);

        await Poll.UntilAsync(
            async () => (await cluster[1].CliJsonAsync("service", "kvdb", "members")).EnumerateArray()
                .Any(m => m.GetProperty("nodeName").GetString() == "node-3" && !m.GetProperty("reachable").GetBoolean()),
            TimeSpan.FromSeconds(30),
            "node-3 unreachable in the KVDB members");
        await cluster[1].CliOkAsync("service", "kvdb", "remove-member", "--node", "node-3");
        Assert.Equal(2, (await cluster[2].CliJsonAsync("service", "kvdb", "members")).GetArrayLength());

        // The new voter is not registered until it is a member, so it is named by its Raft endpoint.
        var byName = await cluster[1].CliAsync("service", "kvdb", "add-member", "--node", LocalCluster.NameOf(replacement));
        Assert.NotEqual(0, byName.ExitCode);
        Assert.Contains("give its Raft endpoint", byName.Stderr, StringComparison.Ordinal);
        await cluster[1].CliOkAsync("service", "kvdb", "add-member", "--node", cluster.Address(replacement));
        await Poll.UntilAsync(
            async () => (await cluster.ListNodesAsync(1)).Any(n => n.GetProperty("name").GetString() == LocalCluster.NameOf(replacement)
                && n.GetProperty("kvdb").GetBoolean() && n.GetProperty("status").GetString() == "online"),
            TimeSpan.FromSeconds(60),
            "the replacement voter registered and online");
        var members = (await cluster[replacement].CliJsonAsync("service", "kvdb", "members")).EnumerateArray().ToList();
        Assert.Equal(["node-1", "node-2", LocalCluster.NameOf(replacement)], members.Select(m => m.GetProperty("nodeName").GetString()).Order(StringComparer.Ordinal));

        // The replacement counts toward the majority: with node 1 gone, nodes 2 and 4 still commit.
        await cluster[1].KillAsync();
        await Poll.UntilAsync(
            async () => (await cluster[2].CliAsync("volume", "create", "after-replace", "--size", "1")).ExitCode == 0
                || (await cluster[2].CliAsync("volume", "inspect", "after-replace")).ExitCode == 0,
            TimeSpan.FromSeconds(60),
            "a create committed by nodes 2 and 4");
        Assert.Equal(0, (await cluster[replacement].CliAsync("volume", "inspect", "after-replace")).ExitCode);
    }

    /// <summary>The names of the replicas a node's store holds (its committed <c>meta.json</c> records).</summary>
    private static Task<List<string>> LocalReplicasAsync(SlabNode node, string prefix)
        => Task.FromResult<List<string>>([.. Directory.GetFiles(node.Root, "meta.json", SearchOption.AllDirectories)
            .Where(p => Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(p))) == "volumes")
            .Select(p => JsonDocument.Parse(File.ReadAllText(p)).RootElement.GetProperty("name").GetString()!)
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)]);
}
