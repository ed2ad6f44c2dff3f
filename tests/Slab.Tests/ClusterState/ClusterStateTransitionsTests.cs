using System.Collections.Immutable;
using Slab.Cluster.State;
using Xunit;
using static Slab.Tests.ClusterState.ClusterStateTestData;
using CState = Slab.Cluster.State.ClusterState;

namespace Slab.Tests.ClusterState;

public sealed class ClusterStateTransitionsTests
{
    private static ApplyOutcome Apply(CState state, ClusterCommand command) => ClusterStateTransitions.Apply(state, command);

    private static CState Ok(CState state, ClusterCommand command)
    {
        var (next, result) = Apply(state, command);
        Assert.True(result.IsSuccess, result.ToString());
        Assert.Equal(state.Revision + 1, next.Revision);
        return next;
    }

    private static CommandResult Rejected(CState state, ClusterCommand command, Rejection expected)
    {
        var (next, result) = Apply(state, command);
        Assert.Equal(expected, result.Rejection);
        Assert.False(string.IsNullOrWhiteSpace(result.Message));
        Assert.Same(state, next); // a rejection changes nothing
        return result;
    }

    // ---- nodes ----

    [Fact]
    public void Register_update_status_and_remove_a_node()
    {
        var state = Ok(CState.Empty, Node("a"));
        Assert.Equal(NodeStatus.Online, state.Nodes["a"].Status);

        state = Ok(state, new UpdateNode { NodeId = "a", Zone = "z9", IsKvdbVoter = true });
        Assert.Equal("z9", state.Nodes["a"].Zone);
        Assert.True(state.Nodes["a"].IsKvdbVoter);
        Assert.Equal("r1", state.Nodes["a"].Rack); // untouched

        state = Ok(state, new SetNodeStatus { NodeId = "a", Status = NodeStatus.Maintenance });
        Assert.Equal(NodeStatus.Maintenance, state.Nodes["a"].Status);

        // re-registration keeps an operator's maintenance status
        state = Ok(state, Node("a") with { Addresses = ["10.1.1.1:9501"] });
        Assert.Equal(NodeStatus.Maintenance, state.Nodes["a"].Status);
        Assert.Equal("10.1.1.1:9501", state.Nodes["a"].Addresses[0]);

        state = Ok(state, new RemoveNode { NodeId = "a" });
        Assert.Empty(state.Nodes);
    }

    [Fact]
    public void Node_rejections()
    {
        var state = Build(Node("a", name: "alpha"));
        Rejected(state, Node("b", name: "alpha"), Rejection.AlreadyExists);
        Rejected(state, Node("b", name: "bad name!"), Rejection.InvalidArgument);
        Rejected(state, Node("") with { Name = "x" }, Rejection.InvalidArgument);
        Rejected(state, Node("b") with { Pools = [new() { Id = "p" }, new() { Id = "p" }] }, Rejection.InvalidArgument);
        Rejected(state, new UpdateNode { NodeId = "zz" }, Rejection.NodeNotFound);
        Rejected(state, new SetNodeStatus { NodeId = "zz", Status = NodeStatus.Offline }, Rejection.NodeNotFound);
        Rejected(state, new SetNodeStatus { NodeId = "a", Status = (NodeStatus)42 }, Rejection.InvalidArgument);
        Rejected(state, new RemoveNode { NodeId = "zz" }, Rejection.NodeNotFound);
    }

    [Fact]
    public void A_node_with_replicas_or_attachments_cannot_be_removed()
    {
        var state = ThreeNodesOneVolume();
        var result = Rejected(state, new RemoveNode { NodeId = "a" }, Rejection.NodeInUse);
        Assert.Contains("replica", result.Message, StringComparison.Ordinal);

        state = Ok(state, new AttachVolume { Volume = "v1", NodeId = "c", Device = "/dev/nbd0" });
        result = Rejected(state, new RemoveNode { NodeId = "c" }, Rejection.NodeInUse);
        Assert.Contains("attached", result.Message, StringComparison.Ordinal);
    }

    // ---- create / delete / update ----

    [Fact]
    public void Create_volume_and_find_it_by_name_and_id()
    {
        var state = ThreeNodesOneVolume();
        var volume = state.FindVolume("v1")!;
        Assert.Same(volume, state.FindVolume(volume.Id));
        Assert.Equal(1, volume.Epoch);
        Assert.Equal(2, volume.Replicas.Length);
        Assert.Equal(T0, volume.Created);
    }

    [Fact]
    public void Create_is_idempotent_per_request_id_and_exclusive_per_name()
    {
        var state = Build(Node("a"));
        var create = Volume("v", requestId: "r1");
        var (first, firstResult) = Apply(state, create);
        Assert.True(firstResult.IsSuccess);

        var (second, retryResult) = Apply(first, create);
        Assert.Equal(firstResult, retryResult); // same volume id and epoch
        Assert.Single(second.Volumes);

        var other = Rejected(second, Volume("v", requestId: "r2"), Rejection.AlreadyExists);
        Assert.Contains(firstResult.VolumeId!, other.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Create_rejections()
    {
        var state = Build(Node("a"), Volume("taken"));
        Rejected(state, Volume("x") with { RequestId = "" }, Rejection.InvalidArgument);
        Rejected(state, Volume("x") with { VolumeId = "" }, Rejection.InvalidArgument);
        Rejected(state, Volume("-bad"), Rejection.InvalidArgument);
        Rejected(state, Volume("x", size: 1000), Rejection.InvalidArgument);
        Rejected(state, Volume("x", repl: 4), Rejection.InvalidArgument);
        Rejected(state, Volume("x") with { Spec = new VolumeSpec { SizeBytes = 4096, Fs = "ntfs" } }, Rejection.InvalidArgument);
        Rejected(state, Volume("x") with { VolumeId = state.FindVolume("taken")!.Id }, Rejection.AlreadyExists);
        Rejected(state, Volume("x", inSyncNodes: ["zz"]), Rejection.NodeNotFound);
        Rejected(state, Volume("x", repl: 1, inSyncNodes: ["a", "a"]), Rejection.PlacementViolation);
    }

    [Fact]
    public void Delete_is_refused_while_attached()
    {
        var state = Ok(ThreeNodesOneVolume(), new AttachVolume { Volume = "v1", NodeId = "a", Device = "/dev/nbd3" });
        var refused = Rejected(state, new DeleteVolume { Volume = "v1" }, Rejection.VolumeAttached);
        Assert.Contains("detach", refused.Message, StringComparison.Ordinal);

        state = Ok(state, new DetachVolume { Volume = "v1", NodeId = "a" });
        state = Ok(state, new DeleteVolume { Volume = "v1" });
        Assert.Empty(state.Volumes);
        Assert.Empty(state.VolumeIdsByName);
        Rejected(state, new DeleteVolume { Volume = "v1" }, Rejection.VolumeNotFound);

        // the name is free again
        Ok(state, Volume("v1", requestId: "again"));
    }

    [Fact]
    public void Update_grows_and_relabels_but_never_shrinks()
    {
        var state = ThreeNodesOneVolume();
        var labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("app", "db")]);
        state = Ok(state, new UpdateVolume { Volume = "v1", SizeBytes = 2L << 30, Labels = labels });
        Assert.Equal(2L << 30, state.FindVolume("v1")!.Spec.SizeBytes);
        Assert.Equal("db", state.FindVolume("v1")!.Spec.Labels["app"]);

        Rejected(state, new UpdateVolume { Volume = "v1", SizeBytes = 1L << 30 }, Rejection.InvalidArgument);
        Rejected(state, new UpdateVolume { Volume = "v1", SizeBytes = (2L << 30) + 1 }, Rejection.InvalidArgument);
        Rejected(state, new UpdateVolume { Volume = "nope", SizeBytes = 1 }, Rejection.VolumeNotFound);
    }

    [Fact]
    public void Label_changes_merge_when_they_apply_so_two_updates_keep_each_others_labels()
    {
        static ImmutableSortedDictionary<string, string> Changes(string key, string value)
            => ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create(key, value)]);

        // Two nodes read the same labels and propose one change each: both survive.
        var state = Ok(ThreeNodesOneVolume(), new UpdateVolume { Volume = "v1", LabelChanges = Changes("app", "db") });
        state = Ok(state, new UpdateVolume { Volume = "v1", LabelChanges = Changes("tier", "gold") });
        Assert.Equal(["app=db", "tier=gold"], state.FindVolume("v1")!.Spec.Labels.Select(l => $"{l.Key}={l.Value}"));

        state = Ok(state, new UpdateVolume { Volume = "v1", LabelChanges = Changes("app", "") }); // an empty value removes
        Assert.Equal(["tier=gold"], state.FindVolume("v1")!.Spec.Labels.Select(l => $"{l.Key}={l.Value}"));
        var bad = Rejected(state, new UpdateVolume { Volume = "v1", LabelChanges = Changes("no good!", "x") }, Rejection.InvalidArgument);
        Assert.Contains("invalid label key", bad.Message, StringComparison.Ordinal);
        var shrink = Rejected(state, new UpdateVolume { Volume = "v1", SizeBytes = 1L << 20 }, Rejection.InvalidArgument);
        Assert.Contains("shrinking to 1 MiB is not supported", shrink.Message, StringComparison.Ordinal);
    }

    // ---- replicas and epochs ----

    [Fact]
    public void Each_change_of_the_in_sync_set_bumps_the_epoch()
    {
        var state = ThreeNodesOneVolume();
        Assert.Equal(1, state.FindVolume("v1")!.Epoch);

        // add c as catching up: in-sync set unchanged, epoch unchanged
        state = Ok(state, new SetReplicaSet
        {
            Volume = "v1",
            Replicas = [Replica("a", ReplicaState.InSync), Replica("b", ReplicaState.InSync), Replica("c", ReplicaState.CatchingUp)],
            ExpectedEpoch = 1,
        });
        Assert.Equal(1, state.FindVolume("v1")!.Epoch);

        // b fails: out of the in-sync set → epoch 2
        state = Ok(state, new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.Out });
        Assert.Equal(2, state.FindVolume("v1")!.Epoch);

        // b goes out again: no change, no bump
        state = Ok(state, new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.Out });
        Assert.Equal(2, state.FindVolume("v1")!.Epoch);

        // b resyncs (catching up: no bump), then is re-admitted → epoch 3
        state = Ok(state, new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.CatchingUp });
        Assert.Equal(2, state.FindVolume("v1")!.Epoch);
        state = Ok(state, new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.InSync, ExpectedEpoch = 2 });
        Assert.Equal(3, state.FindVolume("v1")!.Epoch);

        // dropping c (catching up) from the set: in-sync set {a, b} unchanged
        state = Ok(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync), Replica("b", ReplicaState.InSync)] });
        Assert.Equal(3, state.FindVolume("v1")!.Epoch);

        // dropping b (in sync) from the set bumps
        state = Ok(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync)] });
        Assert.Equal(4, state.FindVolume("v1")!.Epoch);
    }

    [Fact]
    public void Ha_update_changes_the_replica_count_without_an_epoch_bump_and_rebuilds_promote()
    {
        // v2: repl 2 on a and b, both in sync.
        var state = Build(ThreeNodesOneVolume(), Volume("v2", repl: 2, inSyncNodes: ["a", "b"]));
        var rebuilding = Replica("c", ReplicaState.Rebuilding) with { Incarnation = "i1" };
        state = Ok(state, new ChangeReplication { Volume = "v2", Repl = 3, Replicas = [Replica("a", ReplicaState.InSync), Replica("b", ReplicaState.InSync), rebuilding] });
        var v2 = state.FindVolume("v2")!;
        Assert.Equal((3, 3, 1L), (v2.Spec.Repl, v2.Replicas.Length, v2.Epoch));
        Assert.Equal("i1", v2.FindReplica("c")!.Incarnation);

        // The rebuild ends like a resync: into the in-sync set by an epoch bump.
        state = Ok(state, new SetReplicaState { Volume = "v2", NodeId = "c", State = ReplicaState.InSync, ExpectedEpoch = 1 });
        Assert.Equal(2, state.FindVolume("v2")!.Epoch);

        // Lowering to 1 removes in-sync replicas without a bump (they are deleted, never read again).
        state = Ok(state, new ChangeReplication { Volume = "v2", Repl = 1, Replicas = [Replica("c", ReplicaState.InSync) with { Incarnation = "i1" }] });
        v2 = state.FindVolume("v2")!;
        Assert.Equal((1, "c", 2L), (v2.Spec.Repl, v2.Replicas.Single().NodeId, v2.Epoch));
    }

    [Fact]
    public void A_moved_replica_leaves_when_its_replacement_is_in_sync()
    {
        var state = Build(Node("a"), Node("b"), Node("c"), Volume("v1", repl: 2, inSyncNodes: ["a", "b"]));
        var replacement = Replica("c", ReplicaState.Rebuilding) with { Incarnation = "i9", Replaces = "b" };
        Rejected(state, new MoveReplica { Volume = "v1", FromNode = "b" }, Rejection.InvalidArgument); // not placed
        Rejected(state, new MoveReplica { Volume = "v1", FromNode = "c", Replacement = replacement }, Rejection.ReplicaNotFound);
        Rejected(state, new MoveReplica { Volume = "v1", FromNode = "b", Replacement = replacement with { NodeId = "a" } }, Rejection.InvalidArgument);
        Rejected(state, new MoveReplica { Volume = "v1", FromNode = "b", Replacement = replacement with { State = ReplicaState.InSync } }, Rejection.InvalidArgument);

        state = Ok(state, new MoveReplica { Volume = "v1", FromNode = "b", Replacement = replacement });
        Assert.Equal(3, state.FindVolume("v1")!.Replicas.Length); // one over repl while it moves
        Rejected(state, new MoveReplica { Volume = "v1", FromNode = "a", Replacement = replacement with { Replaces = "a" } }, Rejection.AlreadyExists);
        Rejected(state, new ChangeReplication { Volume = "v1", Repl = 3, Replicas = state.FindVolume("v1")!.Replicas }, Rejection.InvalidArgument);

        state = Ok(state, new SetReplicaState { Volume = "v1", NodeId = "c", State = ReplicaState.InSync, ExpectedEpoch = 1 });
        var v1 = state.FindVolume("v1")!;
        Assert.Equal(["a", "c"], v1.Replicas.Select(r => r.NodeId));
        Assert.All(v1.Replicas, r => Assert.Equal((ReplicaState.InSync, ""), (r.State, r.Replaces)));
        Assert.Equal(2, v1.Epoch);
    }

    [Fact]
    public void Cluster_options_change_field_by_field_and_refuse_negative_values()
    {
        var state = Ok(CState.Empty, new SetClusterOptions { ResyncBytesPerSecond = 50_000_000 });
        Assert.Equal((ClusterOptions.DefaultReplMoveTimeoutSeconds, 50_000_000L), (state.Options.ReplMoveTimeoutSeconds, state.Options.ResyncBytesPerSecond));
        state = Ok(state, new SetClusterOptions { ReplMoveTimeoutSeconds = 0 });
        Assert.Equal((0, 50_000_000L), (state.Options.ReplMoveTimeoutSeconds, state.Options.ResyncBytesPerSecond));
        Rejected(state, new SetClusterOptions { ReplMoveTimeoutSeconds = -1 }, Rejection.InvalidArgument);
        Rejected(state, new SetClusterOptions { ResyncBytesPerSecond = -5 }, Rejection.InvalidArgument);
        Assert.Equal(state.Options, ClusterStateCodec.DecodeState(ClusterStateCodec.EncodeState(state)).Options);
    }

    [Fact]
    public void Ha_update_rejections()
    {
        var state = Build(ThreeNodesOneVolume(), Volume("v2", repl: 2, inSyncNodes: ["a", "b"]));
        var both = ImmutableArray.Create(Replica("a", ReplicaState.InSync), Replica("b", ReplicaState.InSync));
        var newC = Replica("c", ReplicaState.Rebuilding) with { Incarnation = "i1" };
        Rejected(state, new ChangeReplication { Volume = "nope", Repl = 3, Replicas = both.Add(newC) }, Rejection.VolumeNotFound);
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 4, Replicas = both.Add(newC) }, Rejection.InvalidArgument);
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 2, Replicas = both }, Rejection.InvalidArgument); // no change
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 3 }, Rejection.InvalidArgument); // not prepared
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 3, Replicas = both.Add(Replica("c", ReplicaState.InSync) with { Incarnation = "i1" }) }, Rejection.InvalidArgument);
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 3, Replicas = both.Add(Replica("c", ReplicaState.Rebuilding)) }, Rejection.InvalidArgument); // no incarnation
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 3, Replicas = [Replica("a", ReplicaState.Out), Replica("b", ReplicaState.InSync), newC] }, Rejection.InvalidArgument); // kept replicas stay as they are
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 3, Replicas = both.Add(newC with { NodeId = "a" }) }, Rejection.InvalidArgument);
        Rejected(state, new ChangeReplication { Volume = "v2", Repl = 1, Replicas = [Replica("c", ReplicaState.InSync)] }, Rejection.InvalidArgument); // lowering only removes

        var offline = Ok(state, new SetNodeStatus { NodeId = "c", Status = NodeStatus.Offline });
        Rejected(offline, new ChangeReplication { Volume = "v2", Repl = 3, Replicas = both.Add(newC) }, Rejection.NodeUnavailable);

        // Lowering may not leave the volume without an in-sync replica.
        var oneOut = Ok(state, new SetReplicaState { Volume = "v2", NodeId = "b", State = ReplicaState.Out });
        Rejected(oneOut, new ChangeReplication { Volume = "v2", Repl = 1, Replicas = [Replica("b", ReplicaState.Out)] }, Rejection.LastInSyncReplica);
    }

    [Fact]
    public void Replica_rejections()
    {
        var state = ThreeNodesOneVolume();
        Rejected(state, new SetReplicaState { Volume = "v1", NodeId = "c", State = ReplicaState.Out }, Rejection.ReplicaNotFound);
        Rejected(state, new SetReplicaState { Volume = "v1", NodeId = "a", State = ReplicaState.Out, ExpectedEpoch = 7 }, Rejection.StaleEpoch);
        Rejected(state, new SetReplicaState { Volume = "zz", NodeId = "a", State = ReplicaState.Out }, Rejection.VolumeNotFound);
        Rejected(state, new SetReplicaSet { Volume = "v1", Replicas = [], ExpectedEpoch = 5 }, Rejection.StaleEpoch);

        // cannot lose the last in-sync replica, either way
        state = Ok(state, new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.Out });
        Rejected(state, new SetReplicaState { Volume = "v1", NodeId = "a", State = ReplicaState.Out }, Rejection.LastInSyncReplica);
        Rejected(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("b", ReplicaState.CatchingUp)] }, Rejection.LastInSyncReplica);

        // an out replica cannot jump to in sync; a new replica cannot arrive in sync
        Rejected(state, new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.InSync }, Rejection.InvalidArgument);
        Rejected(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync), Replica("c", ReplicaState.InSync)] }, Rejection.InvalidArgument);

        // placement: distinct nodes, at most repl, known pools, online nodes for new replicas
        Rejected(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync), Replica("a", ReplicaState.Out)] }, Rejection.PlacementViolation);
        Rejected(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync), Replica("zz", ReplicaState.Out)] }, Rejection.NodeNotFound);
        Rejected(state, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync), new ReplicaInfo { NodeId = "c", PoolId = "nope" }] }, Rejection.PlacementViolation);
        var offline = Ok(state, new SetNodeStatus { NodeId = "c", Status = NodeStatus.Decommissioning });
        Rejected(offline, new SetReplicaSet { Volume = "v1", Replicas = [Replica("a", ReplicaState.InSync), Replica("c", ReplicaState.CatchingUp)] }, Rejection.NodeUnavailable);
        var small = Build(Node("a"), Node("b"), Volume("one", repl: 1, inSyncNodes: ["a"]));
        Rejected(small, new SetReplicaSet { Volume = "one", Replicas = [Replica("a", ReplicaState.InSync), Replica("b", ReplicaState.CatchingUp)] }, Rejection.PlacementViolation);
    }

    [Fact]
    public void Node_selector_restricts_replica_nodes()
    {
        var ssd = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("media", "ssd")]);
        var state = Build(Node("a", labels: ssd), Node("b"));
        var create = Volume("sel", repl: 2) with { Spec = new VolumeSpec { SizeBytes = 4096, Repl = 2, NodeSelector = ssd } };
        state = Ok(state, create);
        Ok(state, new SetReplicaSet { Volume = "sel", Replicas = [Replica("a", ReplicaState.InSync)] });
        var result = Rejected(state, new SetReplicaSet { Volume = "sel", Replicas = [Replica("b", ReplicaState.InSync)] }, Rejection.PlacementViolation);
        Assert.Contains("media=ssd", result.Message, StringComparison.Ordinal);
    }

    // ---- attach ----

    [Fact]
    public void A_resync_attachment_yields_to_a_host_attach_and_a_purpose_detach_spares_a_host_attach()
    {
        var state = ThreeNodesOneVolume();
        var resync = new AttachVolume { Volume = "v1", NodeId = "a", Purpose = AttachPurpose.Resync };
        state = Ok(state, resync);
        Assert.Equal(AttachPurpose.Resync, state.FindVolume("v1")!.Attachment!.Purpose);
        Rejected(state, resync with { NodeId = "b" }, Rejection.AttachedElsewhere);

        // Delete does not wait for an internal resync; a host attach elsewhere takes it over and fences it.
        Ok(state, new DeleteVolume { Volume = "v1" });
        var moved = Ok(state, new AttachVolume { Volume = "v1", NodeId = "b", Device = "/dev/nbd0" });
        Assert.Equal(("b", AttachPurpose.Host, 2L), (moved.FindVolume("v1")!.Attachment!.NodeId, moved.FindVolume("v1")!.Attachment!.Purpose, moved.FindVolume("v1")!.Epoch));

        // On the resyncing node a host attach shares its controller: no fencing. A resync attach never downgrades it.
        var here = Ok(state, new AttachVolume { Volume = "v1", NodeId = "a", Device = "/dev/nbd1" });
        Assert.Equal((AttachPurpose.Host, 1L), (here.FindVolume("v1")!.Attachment!.Purpose, here.FindVolume("v1")!.Epoch));
        here = Ok(here, resync);
        Assert.Equal(AttachPurpose.Host, here.FindVolume("v1")!.Attachment!.Purpose);

        // The resync's release leaves the host attach made meanwhile; a plain detach removes either.
        here = Ok(here, new DetachVolume { Volume = "v1", NodeId = "a", Purpose = AttachPurpose.Resync });
        Assert.NotNull(here.FindVolume("v1")!.Attachment);
        Assert.Null(Ok(state, new DetachVolume { Volume = "v1", NodeId = "a", Purpose = AttachPurpose.Resync }).FindVolume("v1")!.Attachment);
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "a", Purpose = (AttachPurpose)9 }, Rejection.InvalidArgument);
    }

    [Fact]
    public void Attach_is_exclusive_and_takeover_bumps_the_epoch()
    {
        var state = Ok(ThreeNodesOneVolume(), new AttachVolume { Volume = "v1", NodeId = "a", Device = "/dev/nbd0", Timestamp = T0.AddMinutes(1) });
        var attachment = state.FindVolume("v1")!.Attachment!;
        Assert.Equal(("a", "/dev/nbd0", T0.AddMinutes(1)), (attachment.NodeId, attachment.Device, attachment.Since));
        Assert.Equal(1, state.FindVolume("v1")!.Epoch);

        // attaching again where it is attached is idempotent
        state = Ok(state, new AttachVolume { Volume = "v1", NodeId = "a", Device = "/dev/nbd0" });
        Assert.Equal(1, state.FindVolume("v1")!.Epoch);

        var refused = Rejected(state, new AttachVolume { Volume = "v1", NodeId = "b" }, Rejection.AttachedElsewhere);
        Assert.Contains("node a", refused.Message, StringComparison.Ordinal);
        Assert.Contains("takeover", refused.Message, StringComparison.Ordinal);

        // a takeover naming the wrong holder is refused too
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "b", TakeOverFrom = "c" }, Rejection.AttachedElsewhere);

        state = Ok(state, new AttachVolume { Volume = "v1", NodeId = "b", Device = "/dev/nbd1", TakeOverFrom = "a" });
        var volume = state.FindVolume("v1")!;
        Assert.Equal("b", volume.Attachment!.NodeId);
        Assert.Equal(2, volume.Epoch);

        // the old holder's detach is refused: it no longer holds it
        Rejected(state, new DetachVolume { Volume = "v1", NodeId = "a" }, Rejection.NotAttachedHere);
        state = Ok(state, new DetachVolume { Volume = "v1", NodeId = "b" });
        Assert.Null(state.FindVolume("v1")!.Attachment);
        Ok(state, new DetachVolume { Volume = "v1", NodeId = "b" }); // detach is idempotent
    }

    [Fact]
    public void Attach_rejections()
    {
        var state = ThreeNodesOneVolume();
        Rejected(state, new AttachVolume { Volume = "zz", NodeId = "a" }, Rejection.VolumeNotFound);
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "zz" }, Rejection.NodeNotFound);
        var down = Ok(state, new SetNodeStatus { NodeId = "c", Status = NodeStatus.Offline });
        Rejected(down, new AttachVolume { Volume = "v1", NodeId = "c" }, Rejection.NodeUnavailable);
        Rejected(state, new DetachVolume { Volume = "zz", NodeId = "a" }, Rejection.VolumeNotFound);
    }

    // ---- snapshots ----

    [Fact]
    public void Snapshots_are_created_and_deleted_with_unique_names()
    {
        var state = Ok(ThreeNodesOneVolume(), new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "daily", Timestamp = T0 });
        var snapshot = state.FindVolume("v1")!.FindSnapshot("daily")!;
        Assert.Equal(("s1", 1L << 30), (snapshot.Id, snapshot.SizeBytes));

        Rejected(state, new CreateSnapshot { Volume = "v1", SnapshotId = "s2", Name = "daily" }, Rejection.AlreadyExists);
        Rejected(state, new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "other" }, Rejection.AlreadyExists);
        Rejected(state, new CreateSnapshot { Volume = "v1", SnapshotId = "s3", Name = "no good" }, Rejection.InvalidArgument);
        Rejected(state, new CreateSnapshot { Volume = "zz", SnapshotId = "s3", Name = "x" }, Rejection.VolumeNotFound);

        state = Ok(state, new DeleteSnapshot { Volume = "v1", Snapshot = "s1" });
        Assert.Empty(state.FindVolume("v1")!.Snapshots);
        Rejected(state, new DeleteSnapshot { Volume = "v1", Snapshot = "daily" }, Rejection.SnapshotNotFound);
    }

    [Fact]
    public void A_snapshot_is_pending_until_committed_at_the_epoch_it_was_cut_with_in_sync_holders()
    {
        var state = Ok(ThreeNodesOneVolume(), new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "daily", Timestamp = T0 });
        var volume = state.FindVolume("v1")!;
        Assert.True(volume.Snapshots[0].Pending);

        Rejected(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = volume.Epoch + 1, Holders = ["a", "b"] }, Rejection.StaleEpoch);
        Rejected(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = volume.Epoch, Holders = [] }, Rejection.InvalidArgument);
        Rejected(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = volume.Epoch, Holders = ["c"] }, Rejection.ReplicaNotFound);
        Rejected(state, new CommitSnapshot { Volume = "v1", SnapshotId = "nope", ExpectedEpoch = volume.Epoch, Holders = ["a"] }, Rejection.SnapshotNotFound);

        state = Ok(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = volume.Epoch, Holders = ["a", "b"] });
        var snapshot = state.FindVolume("v1")!.Snapshots[0];
        Assert.False(snapshot.Pending);
        Assert.Equal(["a", "b"], snapshot.HoldingReplicas(state.FindVolume("v1")!).Select(r => r.NodeId));

        // A replica removed and placed again (a new incarnation) no longer holds it.
        var v = state.FindVolume("v1")!;
        state = Ok(state, new SetReplicaSet { Volume = "v1", Replicas = [v.Replicas[0], v.Replicas[1] with { Incarnation = "new", State = ReplicaState.Rebuilding }] });
        Assert.Equal(["a"], state.FindVolume("v1")!.Snapshots[0].HoldingReplicas(state.FindVolume("v1")!).Select(r => r.NodeId));
    }

    [Fact]
    public void A_replica_that_copied_a_committed_snapshot_is_added_as_a_holder_of_its_incarnation()
    {
        var state = Ok(ThreeNodesOneVolume(), new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "daily", Timestamp = T0 });
        var v = state.FindVolume("v1")!;
        Rejected(state, new AddSnapshotHolder { Volume = "v1", SnapshotId = "s1", NodeId = "b", Incarnation = v.FindReplica("b")!.Incarnation }, Rejection.InvalidArgument); // pending
        state = Ok(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = v.Epoch, Holders = ["a"] });

        // b's replica is replaced (new incarnation, rebuilt): only the copy of that incarnation counts.
        state = Ok(state, new SetReplicaSet { Volume = "v1", Replicas = [v.Replicas[0], v.Replicas[1] with { Incarnation = "new", State = ReplicaState.Rebuilding }] });
        Rejected(state, new AddSnapshotHolder { Volume = "v1", SnapshotId = "s1", NodeId = "b", Incarnation = v.Replicas[1].Incarnation }, Rejection.ReplicaNotFound);
        Rejected(state, new AddSnapshotHolder { Volume = "v1", SnapshotId = "s1", NodeId = "c", Incarnation = "x" }, Rejection.ReplicaNotFound);
        Rejected(state, new AddSnapshotHolder { Volume = "v1", SnapshotId = "nope", NodeId = "b", Incarnation = "new" }, Rejection.SnapshotNotFound);
        Rejected(state, new AddSnapshotHolder { Volume = "zz", SnapshotId = "s1", NodeId = "b", Incarnation = "new" }, Rejection.VolumeNotFound);

        var added = Ok(state, new AddSnapshotHolder { Volume = "v1", SnapshotId = "s1", NodeId = "b", Incarnation = "new" });
        var volume = added.FindVolume("v1")!;
        Assert.Equal(["a", "b"], volume.Snapshots[0].HoldingReplicas(volume).Select(r => r.NodeId).Order());

        // A retry changes nothing.
        var retry = ClusterStateTransitions.Apply(added, new AddSnapshotHolder { Volume = "v1", SnapshotId = "s1", NodeId = "b", Incarnation = "new" });
        Assert.True(retry.Result.IsSuccess);
        Assert.Equal(volume.Snapshots[0].Holders, retry.State.FindVolume("v1")!.Snapshots[0].Holders);
    }

    [Fact]
    public void A_volume_takes_at_most_the_snapshot_limit()
    {
        var state = ThreeNodesOneVolume();
        for (var i = 0; i < ClusterStateTransitions.MaxSnapshotsPerVolume; i++)
        {
            state = ClusterStateTransitions.Apply(state, new CreateSnapshot { Volume = "v1", SnapshotId = $"s{i}", Name = $"n{i}" }).State;
        }

        Assert.Equal(ClusterStateTransitions.MaxSnapshotsPerVolume, state.FindVolume("v1")!.Snapshots.Length);
        Rejected(state, new CreateSnapshot { Volume = "v1", SnapshotId = "over", Name = "over" }, Rejection.InvalidArgument);
    }

    private static CState WithCommittedSnapshot()
    {
        var state = Ok(ThreeNodesOneVolume(), new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "daily", Timestamp = T0 });
        return Ok(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = state.FindVolume("v1")!.Epoch, Holders = ["a", "b"] });
    }

    [Fact]
    public void A_host_attach_takes_a_snapshot_attachment_over_with_an_epoch_bump_so_the_commit_fails()
    {
        var state = Ok(ThreeNodesOneVolume(), new AttachVolume { Volume = "v1", NodeId = "a", Purpose = AttachPurpose.Snapshot });
        var epoch = state.FindVolume("v1")!.Epoch;
        state = Ok(state, new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "daily" });
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "b", Purpose = AttachPurpose.Resync }, Rejection.AttachedElsewhere);

        state = Ok(state, new AttachVolume { Volume = "v1", NodeId = "b", Device = "/dev/nbd0" });
        Assert.Equal(epoch + 1, state.FindVolume("v1")!.Epoch);
        Rejected(state, new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = epoch, Holders = ["a", "b"] }, Rejection.StaleEpoch);
    }

    [Fact]
    public void A_restore_holds_the_volume_and_its_finish_rebuilds_the_replicas_it_did_not_restore()
    {
        var state = WithCommittedSnapshot();
        var epoch = state.FindVolume("v1")!.Epoch;
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "c", Purpose = AttachPurpose.Restore, RestoreSnapshotId = "s1", RestoreSource = "c" }, Rejection.ReplicaNotFound);
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "c", Purpose = AttachPurpose.Restore, RestoreSnapshotId = "nope", RestoreSource = "a" }, Rejection.SnapshotNotFound);
        var attached = Ok(state, new AttachVolume { Volume = "v1", NodeId = "a", Device = "/dev/nbd0" });
        Rejected(attached, new AttachVolume { Volume = "v1", NodeId = "c", Purpose = AttachPurpose.Restore, RestoreSnapshotId = "s1", RestoreSource = "a" }, Rejection.VolumeAttached);

        state = Ok(state, new AttachVolume { Volume = "v1", NodeId = "c", Purpose = AttachPurpose.Restore, RestoreSnapshotId = "s1", RestoreSource = "a" });
        Rejected(state, new AttachVolume { Volume = "v1", NodeId = "b", Device = "/dev/nbd0" }, Rejection.AttachedElsewhere);
        Rejected(state, new DeleteVolume { Volume = "v1" }, Rejection.VolumeAttached);
        Rejected(state, new DeleteSnapshot { Volume = "v1", Snapshot = "s1" }, Rejection.VolumeAttached);
        Rejected(state, new FinishRestore { Volume = "v1", NodeId = "b", Restored = ["a"] }, Rejection.NotAttachedHere);

        var abandoned = Ok(state, new FinishRestore { Volume = "v1", NodeId = "c", Restored = [] });
        Assert.Null(abandoned.FindVolume("v1")!.Attachment);
        Assert.Equal(epoch, abandoned.FindVolume("v1")!.Epoch);
        Assert.All(abandoned.FindVolume("v1")!.Replicas, r => Assert.Equal(ReplicaState.InSync, r.State));

        var finished = Ok(state, new FinishRestore { Volume = "v1", NodeId = "c", Restored = ["a"], Timestamp = T0.AddMinutes(1) }).FindVolume("v1")!;
        Assert.Null(finished.Attachment);
        Assert.Equal(epoch + 1, finished.Epoch);
        Assert.Equal([ReplicaState.InSync, ReplicaState.Rebuilding], finished.Replicas.Select(r => r.State));
    }

    [Fact]
    public void Taking_over_an_interrupted_restore_keeps_its_source_and_rebuilds_the_rest()
    {
        var state = Ok(WithCommittedSnapshot(), new AttachVolume { Volume = "v1", NodeId = "c", Purpose = AttachPurpose.Restore, RestoreSnapshotId = "s1", RestoreSource = "b" });
        var epoch = state.FindVolume("v1")!.Epoch;
        var taken = Ok(state, new AttachVolume { Volume = "v1", NodeId = "a", Device = "/dev/nbd1", TakeOverFrom = "c" }).FindVolume("v1")!;
        Assert.Equal(epoch + 1, taken.Epoch);
        Assert.Equal(AttachPurpose.Host, taken.Attachment!.Purpose);
        Assert.Equal([ReplicaState.Rebuilding, ReplicaState.InSync], taken.Replicas.Select(r => r.State));
    }

    [Fact]
    public void A_clone_is_in_sync_only_on_holders_of_a_committed_snapshot()
    {
        var state = WithCommittedSnapshot();
        var sourceId = state.FindVolume("v1")!.Id;
        var clone = Volume("c1", repl: 2) with { Origin = new VolumeOrigin { VolumeId = sourceId, SnapshotId = "s1", Reference = "v1@daily" } };
        Rejected(state, clone with { Replicas = [Replica("c", ReplicaState.InSync)] }, Rejection.PlacementViolation);
        Rejected(state, clone with { Replicas = [Replica("c", ReplicaState.Rebuilding)] }, Rejection.PlacementViolation);
        Rejected(state, clone with { Origin = clone.Origin! with { SnapshotId = "nope" }, Replicas = [Replica("a", ReplicaState.InSync)] }, Rejection.SnapshotNotFound);
        Rejected(state, clone with { Spec = clone.Spec with { SizeBytes = 4096 }, Replicas = [Replica("a", ReplicaState.InSync)] }, Rejection.InvalidArgument);

        state = Ok(state, clone with { Replicas = [Replica("a", ReplicaState.InSync), Replica("c", ReplicaState.Rebuilding)] });
        Assert.Equal("v1@daily", state.FindVolume("c1")!.Origin!.Reference);
    }

    // ---- concurrency of proposals ----

    [Fact]
    public void Fifty_concurrent_creates_of_one_name_have_exactly_one_winner()
    {
        // 50 "nodes" propose a create of the same name, each with its own request id; some retry.
        // Raft serializes them in some interleaved order; whatever the order, one wins.
        var random = new Random(1234);
        var proposals = Enumerable.Range(0, 50)
            .Select(i => Volume("shared", requestId: $"node{i}-req") with { VolumeId = $"vol-{i:D2}" })
            .ToList();
        var log = proposals.Concat(proposals.Where(_ => random.Next(3) == 0)) // retries of some requests
            .OrderBy(_ => random.Next())
            .ToList();

        var state = Build(Node("a"));
        var results = new List<(CreateVolume Command, CommandResult Result)>();
        foreach (var command in log)
        {
            var (next, result) = Apply(state, command);
            results.Add((command, result));
            state = next;
        }

        var winner = results.First(r => r.Result.IsSuccess).Command.RequestId;
        Assert.Single(state.Volumes);
        Assert.All(results, r =>
        {
            if (r.Command.RequestId == winner)
            {
                Assert.True(r.Result.IsSuccess);
                Assert.Equal(state.FindVolume("shared")!.Id, r.Result.VolumeId);
            }
            else
            {
                Assert.Equal(Rejection.AlreadyExists, r.Result.Rejection);
            }
        });
    }

    // ---- encoding ----

    [Fact]
    public void Snapshot_encoding_round_trips_to_an_equal_state()
    {
        var labels = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create("B", "1"), KeyValuePair.Create("a", "2")]);
        var state = Build(
            Node("a", labels: labels), Node("b"), Node("c"),
            Volume("v1", inSyncNodes: ["a", "b"]) with { Spec = new VolumeSpec { SizeBytes = 8192, Repl = 3, Labels = labels, NodeSelector = labels.Clear() } },
            Volume("v2", repl: 1),
            new AttachVolume { Volume = "v1", NodeId = "c", Device = "/dev/nbd7", Timestamp = T0.AddHours(1) },
            new CreateSnapshot { Volume = "v1", SnapshotId = "s", Name = "snap", Timestamp = T0.AddHours(2) },
            new SetReplicaState { Volume = "v1", NodeId = "b", State = ReplicaState.Out });

        var bytes = ClusterStateCodec.EncodeState(state);
        var decoded = ClusterStateCodec.DecodeState(bytes);

        Assert.Equal(bytes, ClusterStateCodec.EncodeState(decoded)); // deterministic and lossless
        Assert.Equal(state.Revision, decoded.Revision);
        Assert.Equal(state.Nodes.Keys, decoded.Nodes.Keys);
        Assert.Equal(state.Nodes["a"].Labels, decoded.Nodes["a"].Labels);
        Assert.Equal(state.Nodes["a"].Pools.ToArray(), decoded.Nodes["a"].Pools.ToArray());
        var (v, d) = (state.FindVolume("v1")!, decoded.FindVolume("v1")!);
        Assert.Equal((v.Id, v.Epoch, v.Spec.SizeBytes, v.Attachment, v.Created), (d.Id, d.Epoch, d.Spec.SizeBytes, d.Attachment, d.Created));
        Assert.Equal(v.Replicas.ToArray(), d.Replicas.ToArray());
        Assert.Equal(v.Snapshots.ToArray(), d.Snapshots.ToArray());
        Assert.Equal(state.VolumeIdsByName, decoded.VolumeIdsByName);

        // the decoded state behaves the same under further commands
        var next = Volume("v3");
        Assert.Equal(
            ClusterStateCodec.EncodeState(ClusterStateTransitions.Apply(state, next).State),
            ClusterStateCodec.EncodeState(ClusterStateTransitions.Apply(decoded, next).State));
    }

    [Fact]
    public void Commands_round_trip_and_unknown_formats_are_refused()
    {
        ClusterCommand[] commands =
        [
            Node("a"), new UpdateNode { NodeId = "a", Labels = ImmutableSortedDictionary<string, string>.Empty }, new SetNodeStatus { NodeId = "a", Status = NodeStatus.Offline },
            new RemoveNode { NodeId = "a" }, Volume("v", inSyncNodes: ["a"]), new DeleteVolume { Volume = "v" }, new UpdateVolume { Volume = "v", SizeBytes = 8192 },
            new SetReplicaSet { Volume = "v", Replicas = [Replica("a", ReplicaState.Out)], ExpectedEpoch = 3 },
            new SetReplicaState { Volume = "v", NodeId = "a", State = ReplicaState.CatchingUp }, new AttachVolume { Volume = "v", NodeId = "a", TakeOverFrom = "b" },
            new DetachVolume { Volume = "v", NodeId = "a" }, new CreateSnapshot { Volume = "v", SnapshotId = "s", Name = "n" }, new DeleteSnapshot { Volume = "v", Snapshot = "n" },
            new ChangeReplication { Volume = "v", Repl = 2, Node = "b" }, // as proposed, before the leader prepares it
            new MoveReplica { Volume = "v", FromNode = "a" }, new SetClusterOptions { ReplMoveTimeoutSeconds = 60 },
            new ChangeReplication { Volume = "v", Repl = 2, Replicas = [Replica("a", ReplicaState.InSync), Replica("b", ReplicaState.Rebuilding) with { Incarnation = "i" }] },
        ];
        foreach (var command in commands)
        {
            var proposal = new Proposal { Id = Guid.NewGuid(), Command = command };
            var bytes = ClusterStateCodec.EncodeProposal(proposal);
            var decoded = ClusterStateCodec.DecodeProposal(bytes);
            Assert.Equal(proposal.Id, decoded.Id);
            Assert.Equal(command.GetType(), decoded.Command.GetType());
            Assert.Equal(bytes, ClusterStateCodec.EncodeProposal(decoded));
        }

        var state = ClusterStateCodec.EncodeState(CState.Empty);
        state[4] = 99;
        var error = Assert.Throws<ClusterStateFormatException>(() => ClusterStateCodec.DecodeState(state));
        Assert.Contains("upgrade", error.Message, StringComparison.Ordinal);
        Assert.Throws<ClusterStateFormatException>(() => ClusterStateCodec.DecodeProposal(ClusterStateCodec.EncodeState(CState.Empty)));
        Assert.Throws<ClusterStateFormatException>(() => ClusterStateCodec.DecodeState("SLCS\u0001{oops"u8.ToArray()));
    }
}
