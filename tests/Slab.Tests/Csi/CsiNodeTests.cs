using Csi.V1;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using static Slab.Tests.Csi.CsiRequests;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace Slab.Tests.Csi;

/// <summary>slab-csi's Node service on a real slabd, driven as kubelet drives it: stage, publish, use, unpublish, unstage.</summary>
public sealed class CsiNodeTests(CsiFixture fixture) : IClassFixture<CsiFixture>
{
    private global::Csi.V1.Controller.ControllerClient Controller => fixture.Plugin.Controller;

    private global::Csi.V1.Node.NodeClient Node => fixture.Plugin.Node;

    [Fact]
    public async Task NodeGetInfo_reports_the_node_id_the_CO_uses_and_the_topology_keys()
    {
        var info = await Node.NodeGetInfoAsync(new NodeGetInfoRequest());
        Assert.Equal("k8s-node-a", info.NodeId);
        Assert.Equal("test-node", info.AccessibleTopology.Segments["topology.slab.dev/node"]);
        Assert.True(info.MaxVolumesPerNode > 0);
        var capabilities = (await Node.NodeGetCapabilitiesAsync(new NodeGetCapabilitiesRequest())).Capabilities.Select(c => c.Rpc.Type).ToHashSet();
        Assert.Contains(NodeServiceCapability.Types.RPC.Types.Type.StageUnstageVolume, capabilities);
        Assert.Contains(NodeServiceCapability.Types.RPC.Types.Type.ExpandVolume, capabilities);
        Assert.Contains(NodeServiceCapability.Types.RPC.Types.Type.GetVolumeStats, capabilities);
        Assert.Contains(NodeServiceCapability.Types.RPC.Types.Type.VolumeCondition, capabilities);
    }

    [Fact]
    public async Task A_mount_volume_goes_through_its_whole_life_with_every_call_repeated_and_a_plugin_restart_between()
    {
        var dir = fixture.NewDirectory("life");
        string staging = Path.Combine(dir, "staging"), target = Path.Combine(dir, "pod", "mount"), readOnlyTarget = Path.Combine(dir, "pod2", "mount");
        Directory.CreateDirectory(staging);
        var volume = (await Controller.CreateVolumeAsync(Create("pvc-life", GiB, Mount("ext4", Mode.SingleNodeMultiWriter)))).Volume;
        try
        {
            var capability = Mount("ext4", Mode.SingleNodeMultiWriter, "noatime");
            await Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, capability));
            await Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, capability));
            await fixture.Plugin.RestartAsync();
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target, capability));
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target, capability));
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, readOnlyTarget, capability, readOnly: true));

            await File.WriteAllTextAsync(Path.Combine(target, "hello.txt"), "written through the pod's mount");
            await HostCommand.SyncAsync(target);
            Assert.Equal("written through the pod's mount", await File.ReadAllTextAsync(Path.Combine(readOnlyTarget, "hello.txt")));
            Assert.ThrowsAny<IOException>(() => File.WriteAllText(Path.Combine(readOnlyTarget, "nope.txt"), "x"));
            Assert.Contains("noatime", File.ReadAllText("/proc/self/mountinfo").Split('\n').Single(l => l.Split(' ').ElementAtOrDefault(4) == staging), StringComparison.Ordinal);

            var stats = await Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target });
            var bytes = stats.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes);
            Assert.InRange(bytes.Total, GiB / 2, GiB);
            Assert.True(bytes.Used > 0 && bytes.Available > 0);
            Assert.True(stats.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Inodes).Used > 0);
            Assert.False(stats.VolumeCondition.Abnormal);

            // Deleting a staged volume is refused by slabd (attached).
            await FailsAsync(StatusCode.FailedPrecondition, () => Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId }).ResponseAsync);

            foreach (var path in new[] { target, target, readOnlyTarget })
                await Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = path });
            Assert.False(Directory.Exists(target));
            await fixture.Plugin.RestartAsync();
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
            Assert.False(Slab.Common.MountTable.IsMountPoint(staging));

            // Staged again, the file is still there (formatted once, not again).
            await Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, capability));
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target, capability));
            Assert.Equal("written through the pod's mount", await File.ReadAllTextAsync(Path.Combine(target, "hello.txt")));
            await Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
        }
        finally
        {
            await CleanUpAsync(volume.VolumeId, staging, target, readOnlyTarget);
        }
    }

    [Fact]
    public async Task A_block_volume_is_published_as_the_device_node_itself()
    {
        var dir = fixture.NewDirectory("block");
        string staging = Path.Combine(dir, "staging"), target = Path.Combine(dir, "pod", "dev");
        Directory.CreateDirectory(staging);
        var volume = (await Controller.CreateVolumeAsync(Create("pvc-block", 256L << 20, CsiRequests.Block()))).Volume;
        Assert.Equal("none", volume.VolumeContext["fs"]);
        try
        {
            await FailsAsync(StatusCode.FailedPrecondition, () => Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, Mount())).ResponseAsync);
            await Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, CsiRequests.Block()));
            await Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, CsiRequests.Block()));
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target, CsiRequests.Block()));
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target, CsiRequests.Block()));

            var written = await BlockPatterns.WriteAsync(target, 16, i => i * (1L << 20) + 4096, seed: 7);
            await BlockPatterns.AssertReadsBackAsync(target, written);
            var stats = await Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target });
            Assert.Equal(256L << 20, stats.Usage.Single().Total);

            await Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
            Assert.False(File.Exists(target));
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
        }
        finally
        {
            await CleanUpAsync(volume.VolumeId, staging, target);
        }
    }

    [Fact]
    public async Task Expanding_a_published_volume_grows_its_filesystem()
    {
        var dir = fixture.NewDirectory("grow");
        string staging = Path.Combine(dir, "staging"), target = Path.Combine(dir, "pod", "mount");
        Directory.CreateDirectory(staging);
        var volume = (await Controller.CreateVolumeAsync(Create("pvc-expand", GiB, Mount("xfs")))).Volume;
        try
        {
            await Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, Mount("xfs")));
            await Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target, Mount("xfs")));
            var expanded = await Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest
            {
                VolumeId = volume.VolumeId, CapacityRange = new CapacityRange { RequiredBytes = 3 * GiB }, VolumeCapability = Mount("xfs"),
            });
            Assert.True(expanded.NodeExpansionRequired);
            var node = await Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest
            {
                VolumeId = volume.VolumeId, VolumePath = target, StagingTargetPath = staging, CapacityRange = new CapacityRange { RequiredBytes = 3 * GiB },
            });
            Assert.Equal(3 * GiB, node.CapacityBytes);
            var stats = await Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target });
            Assert.True(stats.Usage.Single(u => u.Unit == VolumeUsage.Types.Unit.Bytes).Total > 2 * GiB);
            await FailsAsync(StatusCode.OutOfRange, () => Node.NodeExpandVolumeAsync(new NodeExpandVolumeRequest
            {
                VolumeId = volume.VolumeId, VolumePath = target, CapacityRange = new CapacityRange { RequiredBytes = 4 * GiB },
            }).ResponseAsync);
        }
        finally
        {
            await CleanUpAsync(volume.VolumeId, staging, target);
        }
    }

    [Fact]
    public async Task Volumes_made_from_a_snapshot_and_from_a_volume_hold_their_sources_data()
    {
        var dir = fixture.NewDirectory("clone");
        string staging = Path.Combine(dir, "s"), target = Path.Combine(dir, "t");
        Directory.CreateDirectory(staging);
        var source = (await Controller.CreateVolumeAsync(Create("pvc-origin", 512L << 20))).Volume;
        string? fromSnapshot = null, fromVolume = null, snapshotId = null;
        try
        {
            await Node.NodeStageVolumeAsync(Stage(source.VolumeId, staging));
            await Node.NodePublishVolumeAsync(Publish(source.VolumeId, staging, target));
            var data = new byte[3 << 20];
            new Random(11).NextBytes(data);
            await File.WriteAllBytesAsync(Path.Combine(target, "data.bin"), data);
            await HostCommand.SyncAsync(target);
            var atSnapshot = HostCommand.Sha256OfFile(Path.Combine(target, "data.bin"));
            snapshotId = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-origin", SourceVolumeId = source.VolumeId })).Snapshot.SnapshotId;
            await File.WriteAllTextAsync(Path.Combine(target, "after.txt"), "after the snapshot");
            await HostCommand.SyncAsync(target);
            await Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = source.VolumeId, TargetPath = target });
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = source.VolumeId, StagingTargetPath = staging });

            var restore = Create("pvc-restored", GiB);
            restore.VolumeContentSource = new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = snapshotId } };
            var restored = (await Controller.CreateVolumeAsync(restore)).Volume;
            fromSnapshot = restored.VolumeId;
            Assert.Equal(GiB, restored.CapacityBytes); // grown past the snapshot's 512 MiB
            Assert.Equal(snapshotId, restored.ContentSource.Snapshot.SnapshotId);
            Assert.Equal(fromSnapshot, (await Controller.CreateVolumeAsync(restore)).Volume.VolumeId);
            var smaller = Create("pvc-smaller", 256L << 20);
            smaller.CapacityRange.LimitBytes = 256L << 20;
            smaller.VolumeContentSource = restore.VolumeContentSource;
            await FailsAsync(StatusCode.OutOfRange, () => Controller.CreateVolumeAsync(smaller).ResponseAsync);

            var clone = Create("pvc-cloned", 512L << 20);
            clone.VolumeContentSource = new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = source.VolumeId } };
            fromVolume = (await Controller.CreateVolumeAsync(clone)).Volume.VolumeId;

            foreach (var (id, hasAfter) in new[] { (fromSnapshot, false), (fromVolume, true) })
            {
                await Node.NodeStageVolumeAsync(Stage(id, staging));
                await Node.NodePublishVolumeAsync(Publish(id, staging, target));
                Assert.Equal(atSnapshot, HostCommand.Sha256OfFile(Path.Combine(target, "data.bin")));
                Assert.Equal(hasAfter, File.Exists(Path.Combine(target, "after.txt")));
                await Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = id, TargetPath = target });
                await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = id, StagingTargetPath = staging });
            }
        }
        finally
        {
            await CleanUpAsync(source.VolumeId, staging, target);
            foreach (var id in new[] { fromSnapshot, fromVolume })
            {
                if (id is not null)
                    await CleanUpAsync(id, staging, target);
            }

            if (snapshotId is not null)
                await Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = snapshotId });
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source.VolumeId });
        }
    }

    [Fact]
    public async Task Node_calls_refuse_bad_requests_with_the_spec_codes()
    {
        var dir = fixture.NewDirectory("errors");
        string staging = Path.Combine(dir, "s"), target = Path.Combine(dir, "t");
        Directory.CreateDirectory(staging);
        const string missing = "0123456789abcdef0123456789abcdef";
        await FailsAsync(StatusCode.NotFound, () => Node.NodeStageVolumeAsync(Stage(missing, staging)).ResponseAsync);
        await FailsAsync(StatusCode.InvalidArgument, () => Node.NodeStageVolumeAsync(Stage("", staging)).ResponseAsync);
        await FailsAsync(StatusCode.InvalidArgument, () => Node.NodeStageVolumeAsync(Stage(missing, "")).ResponseAsync);
        await FailsAsync(StatusCode.InvalidArgument, () => Node.NodeStageVolumeAsync(new NodeStageVolumeRequest { VolumeId = missing, StagingTargetPath = staging }).ResponseAsync);
        await FailsAsync(StatusCode.NotFound, () => Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = missing, StagingTargetPath = staging }).ResponseAsync);
        await FailsAsync(StatusCode.NotFound, () => Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = missing, TargetPath = target }).ResponseAsync);
        await FailsAsync(StatusCode.InvalidArgument, () => Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = missing }).ResponseAsync);
        await FailsAsync(StatusCode.NotFound, () => Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = missing, VolumePath = target }).ResponseAsync);

        var volume = (await Controller.CreateVolumeAsync(Create("pvc-errors", 128L << 20))).Volume;
        try
        {
            var noStaging = Publish(volume.VolumeId, "", target);
            await FailsAsync(StatusCode.FailedPrecondition, () => Node.NodePublishVolumeAsync(noStaging).ResponseAsync);
            var notStaged = await FailsAsync(StatusCode.FailedPrecondition, () => Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target)).ResponseAsync);
            Assert.Contains("not staged", notStaged, StringComparison.Ordinal);
            await FailsAsync(StatusCode.NotFound, () => Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target }).ResponseAsync);
            await FailsAsync(StatusCode.FailedPrecondition, () => Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, Mount("xfs"))).ResponseAsync);
            await FailsAsync(StatusCode.FailedPrecondition, () => Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, Mount(mode: Mode.MultiNodeMultiWriter))).ResponseAsync);
            var badFlag = Mount("ext4", Mode.SingleNodeWriter, "has space");
            await FailsAsync(StatusCode.InvalidArgument, () => Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging, badFlag)).ResponseAsync);
            Assert.False(Slab.Common.MountTable.IsMountPoint(staging));
            // Unstaging what was never staged is a no-op.
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
        }
        finally
        {
            await CleanUpAsync(volume.VolumeId, staging, target);
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
        }
    }

    /// <summary>Undoes whatever a failed test left: unpublish, unstage (each a no-op when done), then delete.</summary>
    private async Task CleanUpAsync(string volumeId, string staging, params string[] targets)
    {
        try
        {
            foreach (var target in targets)
                await Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volumeId, TargetPath = target });
            await Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volumeId, StagingTargetPath = staging });
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volumeId });
        }
        catch (RpcException)
        {
            // The node fixture's teardown removes what is left.
        }
    }
}
