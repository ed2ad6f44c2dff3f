using Slab.Cluster.Node;
using Slab.Cluster.State;
using Xunit;
using static Slab.Tests.ClusterState.ClusterStateTestData;

namespace Slab.Tests.ClusterState;

public sealed class NodeAlertsTests
{
    [Fact]
    public void A_snapshot_whose_holders_were_all_replaced_is_flagged_and_one_a_copy_reached_is_not()
    {
        var state = ThreeNodesOneVolume();
        var v = state.FindVolume("v1")!;
        state = Build(
            state,
            new CreateSnapshot { Volume = "v1", SnapshotId = "s1", Name = "daily", Timestamp = T0 },
            new CommitSnapshot { Volume = "v1", SnapshotId = "s1", ExpectedEpoch = v.Epoch, Holders = ["a"] },
            new CreateSnapshot { Volume = "v1", SnapshotId = "s2", Name = "weekly", Timestamp = T0 },
            new CommitSnapshot { Volume = "v1", SnapshotId = "s2", ExpectedEpoch = v.Epoch, Holders = ["a"] });

        // a's replica is replaced (a new incarnation); b copied s2 before, nobody copied s1.
        state = Build(state, new AddSnapshotHolder { Volume = "v1", SnapshotId = "s2", NodeId = "b", Incarnation = v.FindReplica("b")!.Incarnation });
        state = Build(state, new SetReplicaSet { Volume = "v1", Replicas = [v.Replicas[0] with { Incarnation = "new", State = ReplicaState.Rebuilding }, v.Replicas[1]] });

        var alerts = new List<NodeAlert>();
        NodeAlerts.AddReplicaAlerts(alerts, _ => true, state);

        var unheld = Assert.Single(alerts, a => a.Type == AlertType.SnapshotUnheld);
        Assert.Equal("snapshot v1@daily", unheld.Resource);
        Assert.Equal(AlertSeverity.Warning, unheld.Severity);
        var degraded = Assert.Single(alerts, a => a.Type == AlertType.ReplicaDegraded);
        Assert.Equal(AlertSeverity.Warning, degraded.Severity); // b is still in sync and online

        // With b's node offline too, the volume has no usable replica: critical.
        alerts.Clear();
        NodeAlerts.AddReplicaAlerts(alerts, node => node != "b", state);
        Assert.All(alerts.Where(a => a.Type == AlertType.ReplicaDegraded), a => Assert.Equal(AlertSeverity.Critical, a.Severity));
    }
}
