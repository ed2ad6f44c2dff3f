using Slab.Tests.Infrastructure;
using Slab.Tests.Replication;
using Xunit;
using Xunit.Abstractions;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// A replica's drive fills up under a real slabd: writes that need new space there fail with
/// ENOSPC, the controller drops that replica (epoch bump) and acknowledges them on the other one,
/// <c>slabctl status</c> says so, and once there is room again the replica is resynced by delta and
/// the replicas compare equal.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class ClusterDriveFaultTests(ITestOutputHelper output)
{
    private const int Block = 4096;

    [Fact]
    public async Task A_replica_whose_drive_fills_up_is_faulted_while_writes_go_on_and_resyncs_once_there_is_room()
    {
        HostCommand.RequireTool("dd", "coreutils");
        HostCommand.RequireTool("fallocate", "util-linux");
        await using var cluster = await LocalCluster.StartAsync(2);
        var name = LocalCluster.UniqueName("full");
        await cluster[1].CliOkAsync("volume", "create", name, "--size", "1", "--repl", "2");
        var volumeId = (await cluster.InspectAsync(1, name)).GetProperty("id").GetString()!;
        var device = (await cluster[1].CliOkAsync("host", "attach", name)).Trim();
        var before = await BlockPatterns.WriteAsync(device, 4, i => i * Block, seed: 500);

        // Everything left on node-2's drive is taken by a file Slab knows nothing of.
        var driveRoot = Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(Path.GetDirectoryName(LocalCluster.ReplicaFile(cluster[2], volumeId)))))!;
        var fillers = new List<string>();
        try
        {
            // fallocate of all that is free fails (the filesystem keeps some back): halve until it fits, until nothing usable is left.
            for (var size = new DriveInfo(driveRoot).AvailableFreeSpace; size >= Block && fillers.Count < 64;)
            {
                var filler = Path.Combine(driveRoot, $"filler-{fillers.Count}");
                if ((await HostCommand.RunAsync("fallocate", ["-l", size.ToString(System.Globalization.CultureInfo.InvariantCulture), filler])).ExitCode == 0)
                {
                    fillers.Add(filler);
                    size = new DriveInfo(driveRoot).AvailableFreeSpace;
                }
                else
                {
                    File.Delete(filler);
                    size /= 2;
                }
            }

            output.WriteLine(await HostCommand.CheckedAsync("df", "-B1", driveRoot));

            // New regions need space on both replicas; node-2's has none, so it is dropped and the writes are acknowledged on node-1's.
            var after = await BlockPatterns.WriteAsync(device, 64, i => (64L << 20) + (i * (4L << 20)), seed: 600, () => cluster[1].Log);
            var degraded = await cluster.InspectAsync(2, name);
            output.WriteLine(degraded.ToString());
            Assert.Equal("degraded", degraded.GetProperty("state").GetString());
            var modes = degraded.GetProperty("replicas").EnumerateArray().ToDictionary(r => r.GetProperty("nodeName").GetString()!, r => r.GetProperty("state").GetString());
            Assert.Equal("in-sync", modes["node-1"]);
            Assert.NotEqual("in-sync", modes["node-2"]);
            var status = await cluster[2].CliOkAsync("status");
            output.WriteLine(status);
            Assert.Contains("replica on node-2", status, StringComparison.Ordinal);
            await BlockPatterns.AssertReadsBackAsync(device, before.Concat(after));

            // Room again: node-1's controller resyncs it (the reconciler keeps trying) and promotes it.
            fillers.ForEach(File.Delete);
            await Poll.UntilAsync(
                async () => (await cluster.InspectAsync(1, name)).GetProperty("state").GetString() == "up",
                TimeSpan.FromSeconds(90),
                "node-2's replica back in sync");
            Assert.Contains("no differences", await cluster[2].CliOkAsync("volume", "check", name), StringComparison.Ordinal);
            await BlockPatterns.AssertReadsBackAsync(device, before.Concat(after));
        }
        finally
        {
            fillers.ForEach(File.Delete);
        }

        await cluster[1].CliOkAsync("host", "detach", name);
        await cluster[1].CliOkAsync("volume", "delete", name);
    }
}
