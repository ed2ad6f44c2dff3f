using System.Diagnostics;
using Slab.Cluster.State;
using Xunit;
using static Slab.Tests.ClusterState.ClusterStateTestData;

namespace Slab.Tests.ClusterState;

/// <summary>Three in-process voters over TCP on loopback, each with its own data directory.</summary>
[Collection("raft")] // the Raft tests time elections; run them one at a time
public sealed class ClusterStateRaftTests
{
    private static async Task StartInRandomOrderAsync(RaftTestCluster cluster, int seed)
    {
        var random = new Random(seed);
        foreach (var index in Enumerable.Range(0, cluster.Peers.Length).OrderBy(_ => random.Next()))
        {
            await cluster.StartAsync(index);
            await Task.Delay(random.Next(0, 300)); // stagger starts across election timeouts
        }
    }

    private static ClusterStateNode AFollower(RaftTestCluster cluster, ClusterStateNode leader) =>
        cluster.Running.First(n => n != leader);

    [Fact]
    public async Task Voters_started_in_any_order_elect_a_leader_and_apply_a_followers_proposals_everywhere()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: Environment.TickCount);
        var leader = await cluster.WaitForLeaderAsync();
        Assert.Equal(3, leader.Members.Count);
        Assert.Single(leader.Members, m => m.IsLeader);

        var follower = AFollower(cluster, leader);
        Assert.True((await follower.ProposeAsync(Node("a"), default)).IsSuccess);
        var created = await follower.ProposeAsync(Volume("v1", inSyncNodes: ["a"]), default);
        Assert.True(created.IsSuccess, created.ToString());

        // read your writes on the proposing follower, then everywhere
        Assert.NotNull(follower.Current.FindVolume("v1"));
        await cluster.WaitForAllAsync(s => s.FindVolume("v1")?.Id == created.VolumeId, "v1 on every node");

        // rejections come back as typed results through the forwarding path too
        var duplicate = await follower.ProposeAsync(Volume("v1", requestId: "other"), default);
        Assert.Equal(Rejection.AlreadyExists, duplicate.Rejection);

        // and retries of the same request are answered with the same volume
        var retry = await AFollower(cluster, follower).ProposeAsync(Volume("v1", inSyncNodes: ["a"]), default);
        Assert.Equal(created.VolumeId, retry.VolumeId);
    }

    [Fact]
    public async Task A_malformed_forwarded_proposal_is_refused_at_once_not_left_to_the_no_quorum_timeout()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: 11);
        var leader = await cluster.WaitForLeaderAsync();
        var endPoint = cluster.Peers[cluster.IndexOf(leader)].ProposalEndPoint;

        // "SLFW" | Propose (1) | length | a payload that is no encoded proposal, as another version might send.
        using var socket = new System.Net.Sockets.Socket(endPoint.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(endPoint);
        await using var stream = new System.Net.Sockets.NetworkStream(socket, ownsSocket: false);
        var garbage = "not a proposal"u8.ToArray();
        byte[] header = [(byte)'S', (byte)'L', (byte)'F', (byte)'W', 1, 0, 0, 0, 0];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(5), garbage.Length);
        await stream.WriteAsync(header);
        await stream.WriteAsync(garbage);
        var answer = new byte[5];
        await stream.ReadExactlyAsync(answer).AsTask().WaitAsync(RaftTestCluster.NoQuorumTimeout);
        Assert.Equal(3, answer[0]); // Refused: not attempted, so the proposer fails at once with ClusterStateError.Refused
        var message = new byte[System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(answer.AsSpan(1))];
        await stream.ReadExactlyAsync(message);
        Assert.Contains("not Slab cluster data", System.Text.Encoding.UTF8.GetString(message), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Concurrent_creates_of_one_name_from_all_nodes_have_one_winner()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: 7);
        await cluster.WaitForLeaderAsync();
        var nodes = cluster.Running.ToList();
        var results = await Task.WhenAll(Enumerable.Range(0, 30).Select(i =>
            nodes[i % 3].ProposeAsync(Volume("race", requestId: $"r{i}", repl: 1) with { VolumeId = $"id{i}" }, default)));
        Assert.Single(results, r => r.IsSuccess);
        Assert.Equal(29, results.Count(r => r.Rejection == Rejection.AlreadyExists));
        await cluster.WaitForAllAsync(s => s.Volumes.Count == 1, "one volume everywhere");
    }

    [Fact]
    public async Task After_the_leader_stops_a_new_leader_takes_proposals_and_nothing_acknowledged_is_lost()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: 11);
        var leader = await cluster.WaitForLeaderAsync();
        var acknowledged = new List<string>();
        Assert.True((await leader.ProposeAsync(Node("a"), default)).IsSuccess);
        for (var i = 0; i < 8; i++)
        {
            var result = await cluster.Running.ElementAt(i % 3).ProposeAsync(Volume($"before{i}", repl: 1), default);
            Assert.True(result.IsSuccess, result.ToString());
            acknowledged.Add(result.VolumeId!);
        }

        var oldLeader = cluster.IndexOf(leader);
        await cluster.StopAsync(oldLeader);
        var newLeader = await cluster.WaitForLeaderAsync();
        Assert.NotEqual(leader.MemberId, newLeader.MemberId);

        for (var i = 0; i < 8; i++)
        {
            var result = await cluster.Running.ElementAt(i % 2).ProposeAsync(Volume($"after{i}", repl: 1), default);
            Assert.True(result.IsSuccess, result.ToString());
            acknowledged.Add(result.VolumeId!);
        }

        await cluster.WaitForAllAsync(s => acknowledged.All(s.Volumes.ContainsKey), "every acknowledged volume on the survivors");

        // the old leader comes back and catches up with everything
        await cluster.StartAsync(oldLeader);
        await cluster.WaitForAllAsync(s => acknowledged.All(s.Volumes.ContainsKey) && s.Volumes.Count == acknowledged.Count, "the restarted node caught up");
    }

    [Fact]
    public async Task Restarting_all_three_keeps_the_state_from_disk()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: 3);
        var leader = await cluster.WaitForLeaderAsync();
        Assert.True((await leader.ProposeAsync(Node("a"), default)).IsSuccess);
        Assert.True((await leader.ProposeAsync(Node("b"), default)).IsSuccess);
        for (var i = 0; i < 12; i++) // crosses two snapshots (interval 5) plus a WAL tail
        {
            Assert.True((await leader.ProposeAsync(Volume($"v{i}", inSyncNodes: ["a"]), default)).IsSuccess);
        }

        Assert.True((await leader.ProposeAsync(new AttachVolume { Volume = "v3", NodeId = "b", Device = "/dev/nbd3" }, default)).IsSuccess);
        var revision = leader.Current.Revision;
        await cluster.WaitForAllAsync(s => s.Revision == revision, "every node at the final revision");
        var before = ClusterStateCodec.EncodeState(leader.Current);

        for (var i = 0; i < 3; i++)
        {
            await cluster.StopAsync(i);
        }

        await StartInRandomOrderAsync(cluster, seed: 5);
        foreach (var node in cluster.Running)
        {
            // restored from snapshot + WAL before any leader exists
            Assert.True(node.Current.Revision >= 10, $"{node.MemberId} restarted at revision {node.Current.Revision}");
        }

        var newLeader = await cluster.WaitForLeaderAsync();
        await cluster.WaitForAllAsync(s => s.Revision == revision, "every node back at the final revision");
        foreach (var node in cluster.Running)
        {
            Assert.Equal(before, ClusterStateCodec.EncodeState(node.Current));
        }

        Assert.Equal("b", newLeader.Current.FindVolume("v3")!.Attachment!.NodeId);
        Assert.True((await AFollower(cluster, newLeader).ProposeAsync(Volume("after-restart"), default)).IsSuccess);
    }

    [Fact]
    public async Task With_one_of_three_running_proposals_fail_fast_with_NoQuorum()
    {
        await using var cluster = RaftTestCluster.Create(3);

        // a lone founding voter never forms a cluster by itself
        var lone = await cluster.StartAsync(0);
        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ClusterStateException>(() => lone.ProposeAsync(Node("a"), default));
        Assert.Equal(ClusterStateError.NoQuorum, error.Error);
        Assert.True(watch.Elapsed < RaftTestCluster.NoQuorumTimeout + TimeSpan.FromSeconds(2), $"took {watch.Elapsed}");
        Assert.Contains("no quorum", error.Message, StringComparison.Ordinal);
        Assert.False(error.MayHaveBeenApplied);
        Assert.Null(lone.LeaderId);
        Assert.Equal(0, lone.Current.Revision);

        // a working cluster that loses two voters stops taking changes, and says so
        await cluster.StartAsync(1);
        await cluster.StartAsync(2);
        var leader = await cluster.WaitForLeaderAsync();
        Assert.True((await leader.ProposeAsync(Node("a"), default)).IsSuccess);
        var survivor = cluster.IndexOf(leader); // keep the leader: the harder case, it must notice it lost its majority
        foreach (var index in Enumerable.Range(0, 3).Where(i => i != survivor))
        {
            await cluster.StopAsync(index);
        }

        watch.Restart();
        error = await Assert.ThrowsAsync<ClusterStateException>(() => leader.ProposeAsync(Node("b"), default));
        Assert.Equal(ClusterStateError.NoQuorum, error.Error);
        Assert.True(watch.Elapsed < RaftTestCluster.NoQuorumTimeout + TimeSpan.FromSeconds(3), $"took {watch.Elapsed}");
        Assert.Null(leader.Current.FindNode("b"));
    }

    [Fact]
    public async Task A_dead_voter_is_replaced_through_the_leader()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: 13);
        var leader = await cluster.WaitForLeaderAsync();
        Assert.True((await leader.ProposeAsync(Node("a"), default)).IsSuccess);

        var dead = cluster.Running.First(n => n != leader);
        var deadIndex = cluster.IndexOf(dead);
        await cluster.StopAsync(deadIndex);
        var follower = AFollower(cluster, leader);
        await follower.RemoveVoterAsync(cluster.Peers[deadIndex].RaftEndPoint, default); // forwarded to the leader

        var replacement = new ClusterPeer("m9", RaftTestCluster.FreeEndPoint(), RaftTestCluster.FreeEndPoint());
        var joiner = await cluster.StartAsync(cluster.OptionsFor(replacement, joinExisting: true));
        await follower.AddVoterAsync(replacement, default);

        Assert.True((await joiner.ProposeAsync(Volume("after-replace", repl: 1), default)).IsSuccess);
        Assert.NotNull(joiner.Current.FindNode("a")); // caught up with the history

        // Leadership may have moved under load meanwhile: ask whoever leads now, once it has the change.
        await Infrastructure.Poll.UntilAsync(
            async () => (await cluster.WaitForLeaderAsync()).Members.Any(m => m.MemberId == "m9"),
            TimeSpan.FromSeconds(30),
            "the leader lists m9 as a member");
        leader = await cluster.WaitForLeaderAsync();
        Assert.Contains(leader.Members, m => m.MemberId == "m9");
        Assert.DoesNotContain(leader.Members, m => m.MemberId == dead.MemberId);
        await joiner.DisposeAsync();
    }

    [Fact]
    public async Task Every_result_carries_a_revision_that_includes_it_on_the_leader_and_on_followers()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await StartInRandomOrderAsync(cluster, seed: 5);
        var leader = await cluster.WaitForLeaderAsync();
        var onLeader = await leader.ProposeAsync(Node("rev-a"), default);
        var onFollower = await AFollower(cluster, leader).ProposeAsync(Node("rev-b"), default);
        Assert.True(onLeader.Revision > 0, "a result applied on the leader has a revision");
        Assert.True(onFollower.Revision > onLeader.Revision);
        Assert.True(leader.Current.Revision >= onFollower.Revision);
        Assert.NotNull(leader.Current.FindNode("rev-b"));
    }

    [Fact]
    public async Task A_data_directory_keeps_its_member_identity()
    {
        await using var cluster = RaftTestCluster.Create(3);
        await cluster.StartAsync(0);
        await cluster.StopAsync(0);
        var impostor = cluster.Options(1) with { DataDirectory = cluster.Options(0).DataDirectory };
        await using var node = new ClusterStateNode(impostor, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance, TimeProvider.System);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => node.StartAsync(default));
        Assert.Contains("belongs to member", error.Message, StringComparison.Ordinal);
    }
}
