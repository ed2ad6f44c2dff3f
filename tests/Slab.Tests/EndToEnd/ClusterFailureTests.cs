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
                async () => (await LocalExportsAsync(cluster[i], prefix)).SequenceEqual(expected),
                TimeSpan.FromSeconds(60),
                $"node-{i}'s local replicas to be exactly {expected.Count} volumes placed on it");
        }
    }

    private static async Task<List<string>> LocalExportsAsync(SlabNode node, string prefix)
    {
        var list = await HostCommand.CheckedAsync("nbdinfo", "--list", "--json", node.NbdUri(""));
        using var json = JsonDocument.Parse(list);
        return [.. json.RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => e.GetProperty("export-name").GetString()!)
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)];
    }
}
