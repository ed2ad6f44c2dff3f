using System.Buffers.Binary;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using V1 = Slab.Api.V1;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// Group snapshots on real nodes: two volumes attached on two different nodes take sequence-numbered
/// writes in turn (A then B, each acknowledged before the next); a group snapshot coordinated from a
/// third node must cut both at one boundary, so A's number equals B's or is one ahead of it.
/// </summary>
public sealed class ClusterGroupSnapshotTests
{
    [Fact]
    public async Task A_group_snapshot_cuts_volumes_on_different_nodes_at_one_write_boundary()
    {
        await using var cluster = await LocalCluster.StartAsync(3);
        await cluster[1].CliOkAsync("volume", "create", "grp-a", "--size", "256M", "--repl", "2");
        await cluster[1].CliOkAsync("volume", "create", "grp-b", "--size", "256M", "--repl", "2");
        await cluster[1].CliOkAsync("volume", "create", "grp-idle", "--size", "64M");
        var deviceA = (await cluster[1].CliOkAsync("host", "attach", "grp-a")).Trim();
        var deviceB = (await cluster[2].CliOkAsync("host", "attach", "grp-b")).Trim();

        using var channel = ApiChannel.ForUnixSocket(cluster[3].ApiSocket);
        var snapshots = new V1.Snapshots.SnapshotsClient(channel);
        using var stop = new CancellationTokenSource();
        long written = 0;
        var writer = Task.Run(async () =>
        {
            var block = new byte[4096];
            for (long n = 1; !stop.IsCancellationRequested; n++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(block, n);
                await DirectBlockIo.WriteCheckedAsync(deviceA, 0, block);
                await DirectBlockIo.WriteCheckedAsync(deviceB, 0, block);
                Interlocked.Exchange(ref written, n);
            }
        });
        try
        {
            await Poll.UntilAsync(() => Task.FromResult(Interlocked.Read(ref written) >= 3), TimeSpan.FromSeconds(60), "the writer under way");
            var group = await cluster[3].CliJsonAsync("volume", "snapshot", "group", "--volume_ids", "grp-a,grp-b,grp-idle", "--name", "boundary");
            Assert.Equal(["grp-a", "grp-b", "grp-idle"], group.EnumerateArray().Select(s => s.GetProperty("volumeName").GetString()));
            Assert.All(group.EnumerateArray(), s => Assert.Equal("boundary", s.GetProperty("name").GetString()));
            var request = new V1.CreateGroupSnapshotRequest { Name = "boundary" };
            request.Volumes.Add(["grp-a", "grp-b"]);

            // Writes go on after the snapshot; the name is taken on every member now.
            var after = Interlocked.Read(ref written);
            await Poll.UntilAsync(() => Task.FromResult(Interlocked.Read(ref written) >= after + 2), TimeSpan.FromSeconds(60), "writes after the snapshot");
            var again = await Assert.ThrowsAsync<RpcException>(() => snapshots.CreateGroupAsync(request).ResponseAsync);
            Assert.Equal(StatusCode.AlreadyExists, again.StatusCode);
        }
        finally
        {
            await stop.CancelAsync();
            await writer;
        }

        await cluster[3].CliOkAsync("volume", "clone", "grp-a@boundary", "--name", "grp-a-at");
        await cluster[3].CliOkAsync("volume", "clone", "grp-b@boundary", "--name", "grp-b-at");
        var a = BinaryPrimitives.ReadInt64LittleEndian(await DirectBlockIo.ReadAsync((await cluster[3].CliOkAsync("host", "attach", "grp-a-at")).Trim(), 0, 4096));
        var b = BinaryPrimitives.ReadInt64LittleEndian(await DirectBlockIo.ReadAsync((await cluster[3].CliOkAsync("host", "attach", "grp-b-at")).Trim(), 0, 4096));
        Assert.True(b >= 2, $"the snapshot caught the writer under way (b = {b})");
        Assert.True(a == b || a == b + 1, $"one write boundary: A's last write {a}, B's {b}");
        await cluster[3].CliOkAsync("host", "detach", "grp-a-at");
        await cluster[3].CliOkAsync("host", "detach", "grp-b-at");
        await cluster[1].CliOkAsync("host", "detach", "grp-a");
        await cluster[2].CliOkAsync("host", "detach", "grp-b");
    }

    [Fact]
    public async Task A_group_snapshot_that_cannot_cut_every_volume_keeps_none()
    {
        await using var cluster = await LocalCluster.StartAsync(3);
        await cluster[1].CliOkAsync("volume", "create", "whole-a", "--size", "64M", "--repl", "2");
        await cluster[1].CliOkAsync("volume", "create", "whole-b", "--size", "64M");
        await cluster[2].CliOkAsync("volume", "snapshot", "create", "whole-b", "--name", "taken");
        // The holder is not the Raft leader, so freezing it leaves the cluster its quorum.
        var leader = await cluster.LeaderAsync(1);
        var holder = new[] { 1, 2, 3 }.First(i => i != leader);
        await cluster[holder].CliOkAsync("host", "attach", "whole-a");
        using var channel = ApiChannel.ForUnixSocket(cluster[leader].ApiSocket);
        var snapshots = new V1.Snapshots.SnapshotsClient(channel);

        var request = new V1.CreateGroupSnapshotRequest { Name = "taken" };
        request.Volumes.Add(["whole-a", "whole-b"]);
        Assert.Equal(StatusCode.AlreadyExists, (await Assert.ThrowsAsync<RpcException>(() => snapshots.CreateGroupAsync(request).ResponseAsync)).StatusCode);
        var twice = new V1.CreateGroupSnapshotRequest { Name = "twice" };
        twice.Volumes.Add(["whole-a", "whole-a"]);
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(() => snapshots.CreateGroupAsync(twice).ResponseAsync)).StatusCode);

        // The holder of whole-a is frozen: its writes cannot be held, so the group fails, says where, and leaves nothing.
        cluster[holder].Suspend();
        try
        {
            var frozen = new V1.CreateGroupSnapshotRequest { Name = "frozen" };
            frozen.Volumes.Add(["whole-b", "whole-a"]);
            var failed = await Assert.ThrowsAsync<RpcException>(() => snapshots.CreateGroupAsync(frozen, deadline: DateTime.UtcNow.AddMinutes(2)).ResponseAsync);
            Assert.Equal(StatusCode.Unavailable, failed.StatusCode);
            Assert.Contains($"node-{holder}", failed.Status.Detail, StringComparison.Ordinal);
        }
        finally
        {
            cluster[holder].Resume();
        }

        foreach (var volume in new[] { "whole-a", "whole-b" })
        {
            var list = await snapshots.EnumerateAsync(new V1.EnumerateSnapshotsRequest { Volume = volume });
            Assert.DoesNotContain(list.Snapshots, s => s.Name == "frozen");
        }

        await cluster[holder].CliOkAsync("host", "detach", "whole-a");
    }
}
