using Csi.V1;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using static Slab.Tests.Csi.CsiRequests;

namespace Slab.Tests.Csi;

/// <summary>
/// slab-csi on a 3-node cluster (zones z1-z3, one node each): a controller plugin on one node and a
/// node plugin per node, as the Deployment and the DaemonSet run them.
/// </summary>
public sealed class CsiClusterTests
{
    private static Func<int, string?> Zones => i => $"z{i}";

    /// <summary>The requisite external-provisioner sends with Topology on: every node's segment.</summary>
    private static async Task<TopologyRequirement> EveryNodeAsync(IEnumerable<CsiPlugin> nodePlugins)
    {
        var requirement = new TopologyRequirement();
        foreach (var plugin in nodePlugins)
        {
            var info = await plugin.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
            requirement.Requisite.Add(info.AccessibleTopology);
        }

        requirement.Preferred.Add(requirement.Requisite[0]);
        return requirement;
    }

    [Fact]
    public async Task The_statefulset_flow_survives_losing_the_node_its_pod_ran_on()
    {
        await using var cluster = await LocalCluster.StartAsync(3, zoneOf: Zones);
        await using var controller = await CsiPlugin.StartAsync(cluster[3].Endpoint, "controller");
        await using var node1 = await CsiPlugin.StartAsync(cluster[1].Endpoint, "node");
        await using var node2 = await CsiPlugin.StartAsync(cluster[2].Endpoint, "node");
        await using var node3 = await CsiPlugin.StartAsync(cluster[3].Endpoint, "node");

        var info = await node2.Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        Assert.Equal("node-2", info.NodeId);
        Assert.Equal("z2", info.AccessibleTopology.Segments["topology.slab.dev/zone"]);
        Assert.Equal("rack-2", info.AccessibleTopology.Segments["topology.slab.dev/rack"]);

        // provision: the seeds' StorageClass (repl 3), with the provisioner's topology requirement
        var create = Create("pvc-cassandra-0", GiB, Mount("ext4"), ("repl", "3"), ("csi.storage.k8s.io/pvc/name", "data-cassandra-0"), ("csi.storage.k8s.io/pvc/namespace", "lab"));
        create.AccessibilityRequirements = await EveryNodeAsync([node1, node2, node3]);
        var volume = (await controller.Controller.CreateVolumeAsync(create)).Volume;
        Assert.Equal(["z1", "z2", "z3"], volume.AccessibleTopology.Select(t => t.Segments["topology.slab.dev/zone"]).Order(StringComparer.Ordinal));
        var inspected = await cluster.InspectAsync(3, "pvc-cassandra-0");
        Assert.Equal("data-cassandra-0", inspected.GetProperty("spec").GetProperty("labels").GetProperty("pvc").GetString());

        // write on node 1
        string Paths(int i, string leaf) => Path.Combine(cluster[i].Root, "kubelet", leaf);
        Directory.CreateDirectory(Paths(1, "staging"));
        await node1.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, Paths(1, "staging")));
        await node1.Node.NodePublishVolumeAsync(Publish(volume.VolumeId, Paths(1, "staging"), Paths(1, "pod")));
        var data = new byte[8 << 20];
        new Random(5).NextBytes(data);
        await File.WriteAllBytesAsync(Path.Combine(Paths(1, "pod"), "commitlog.bin"), data);
        await HostCommand.SyncAsync(Paths(1, "pod"));
        var written = HostCommand.Sha256OfFile(Path.Combine(Paths(1, "pod"), "commitlog.bin"));

        // while node 1 lives, node 2 cannot take the volume
        Directory.CreateDirectory(Paths(2, "staging"));
        var refused = await FailsAsync(StatusCode.FailedPrecondition, () => node2.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, Paths(2, "staging"))).ResponseAsync);
        Assert.Contains("node-1", refused, StringComparison.Ordinal);

        // lose node 1 (its slabd and its plugin); the pod is rescheduled on node 2
        await node1.DisposeAsync();
        await cluster[1].KillAsync();
        await Poll.UntilAsync(async () => (await cluster.StatusesAsync(2))["node-1"] == "offline", TimeSpan.FromSeconds(60), "node-1 offline");
        await node2.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, Paths(2, "staging")));
        await node2.Node.NodePublishVolumeAsync(Publish(volume.VolumeId, Paths(2, "staging"), Paths(2, "pod")));
        Assert.Equal(written, HostCommand.Sha256OfFile(Path.Combine(Paths(2, "pod"), "commitlog.bin")));

        var condition = (await controller.Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = volume.VolumeId })).Status.VolumeCondition;
        Assert.True(condition.Abnormal);
        Assert.Contains("node-1", condition.Message, StringComparison.Ordinal);

        await node2.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = Paths(2, "pod") });
        await node2.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = Paths(2, "staging") });
    }

    [Fact]
    public async Task Requisite_topology_and_zone_parameters_confine_replicas_and_capacity()
    {
        await using var cluster = await LocalCluster.StartAsync(3, zoneOf: Zones);
        await using var controller = await CsiPlugin.StartAsync(cluster[1].Endpoint, "controller");

        var inZone2 = Create("pvc-zone2", 256L << 20);
        inZone2.AccessibilityRequirements = new TopologyRequirement();
        inZone2.AccessibilityRequirements.Requisite.Add(new global::Csi.V1.Topology { Segments = { ["topology.slab.dev/zone"] = "z2" } });
        var volume = (await controller.Controller.CreateVolumeAsync(inZone2)).Volume;
        Assert.Equal("z2", Assert.Single(volume.AccessibleTopology).Segments["topology.slab.dev/zone"]);
        var replicas = (await cluster.InspectAsync(1, "pvc-zone2")).GetProperty("replicas").EnumerateArray().Select(r => r.GetProperty("nodeName").GetString()).ToList();
        Assert.Equal(["node-2"], replicas);

        // WaitForFirstConsumer: the preferred topology's first node (the pod's) gets the replica.
        var local = Create("pvc-local", 256L << 20);
        local.AccessibilityRequirements = new TopologyRequirement();
        foreach (var i in new[] { 1, 2, 3 })
            local.AccessibilityRequirements.Requisite.Add(new global::Csi.V1.Topology { Segments = { ["topology.slab.dev/node"] = $"node-{i}", ["topology.slab.dev/zone"] = $"z{i}" } });
        local.AccessibilityRequirements.Preferred.Add(local.AccessibilityRequirements.Requisite[2]);
        await controller.Controller.CreateVolumeAsync(local);
        Assert.Equal("node-3", Assert.Single((await cluster.InspectAsync(1, "pvc-local")).GetProperty("replicas").EnumerateArray()).GetProperty("nodeName").GetString());

        var twoInZone2 = Create("pvc-zone2-repl2", 256L << 20, parameters: ("repl", "2"));
        twoInZone2.AccessibilityRequirements = inZone2.AccessibilityRequirements;
        var exhausted = await FailsAsync(StatusCode.ResourceExhausted, () => controller.Controller.CreateVolumeAsync(twoInZone2).ResponseAsync);
        Assert.Contains("z2", exhausted, StringComparison.Ordinal);

        var spread = (await controller.Controller.CreateVolumeAsync(Create("pvc-spread", 256L << 20, parameters: [("repl", "2"), ("zones", "z1,z3")]))).Volume;
        Assert.Equal(["z1", "z3"], spread.AccessibleTopology.Select(t => t.Segments["topology.slab.dev/zone"]).Order(StringComparer.Ordinal));
        var conflict = Create("pvc-conflict", 256L << 20, parameters: ("zones", "z1"));
        conflict.AccessibilityRequirements = inZone2.AccessibilityRequirements;
        await FailsAsync(StatusCode.ResourceExhausted, () => controller.Controller.CreateVolumeAsync(conflict).ResponseAsync);

        var all = await controller.Controller.GetCapacityAsync(new GetCapacityRequest());
        var zone1 = await controller.Controller.GetCapacityAsync(new GetCapacityRequest { AccessibleTopology = new global::Csi.V1.Topology { Segments = { ["topology.slab.dev/zone"] = "z1" } } });
        Assert.True(zone1.AvailableCapacity > 0 && zone1.AvailableCapacity < all.AvailableCapacity, $"z1 {zone1.AvailableCapacity}, all {all.AvailableCapacity}");
        var nowhere = await controller.Controller.GetCapacityAsync(new GetCapacityRequest { AccessibleTopology = new global::Csi.V1.Topology { Segments = { ["topology.slab.dev/zone"] = "z9" } } });
        Assert.Equal(0, nowhere.AvailableCapacity);

        // ModifyVolume changes repl online (ha-update), within the volume's zones.
        var modify = new ControllerModifyVolumeRequest { VolumeId = spread.VolumeId };
        modify.MutableParameters["repl"] = "3";
        var outside = await FailsAsync(StatusCode.ResourceExhausted, () => controller.Controller.ControllerModifyVolumeAsync(modify).ResponseAsync);
        Assert.Contains("outside the allowed zones", outside, StringComparison.Ordinal);
        var free = (await controller.Controller.CreateVolumeAsync(Create("pvc-modify", 256L << 20))).Volume;
        var raise = new ControllerModifyVolumeRequest { VolumeId = free.VolumeId };
        raise.MutableParameters["repl"] = "2";
        await controller.Controller.ControllerModifyVolumeAsync(raise);
        await controller.Controller.ControllerModifyVolumeAsync(raise); // repeat: already 2
        var raised = await cluster.InspectAsync(1, "pvc-modify");
        Assert.Equal(2, raised.GetProperty("spec").GetProperty("repl").GetInt32());
        Assert.Equal(2, raised.GetProperty("replicas").GetArrayLength());
    }
}
