using Csi.V1;
using Slab.Tests.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using static Slab.Tests.Csi.CsiRequests;

namespace Slab.Tests.Csi;

/// <summary>
/// What kubelet's calls find after slabd restarts under staged and published volumes: the repeated
/// stage and publish serve the volume again with its data. Without <c>--keep-attachments</c> a pod
/// running across the restart loses its device meanwhile; with it, the pod's I/O waits for slabd and
/// goes on.
/// </summary>
public sealed class CsiRestartTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Stage_and_publish_repeated_after_a_slabd_restart_serve_the_volume_again()
    {
        await using var node = await SlabNode.StartAsync(driveBytes: 8L << 30);
        await using var plugin = await CsiPlugin.StartAsync(node.Endpoint);
        var dir = Path.Combine(node.Root, "kubelet");
        string staging = Path.Combine(dir, "staging"), target = Path.Combine(dir, "pod");
        Directory.CreateDirectory(staging);
        var volume = (await plugin.Controller.CreateVolumeAsync(Create("pvc-restart", 256L << 20))).Volume;
        await plugin.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging));
        await plugin.Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target));
        await File.WriteAllTextAsync(Path.Combine(target, "before.txt"), "before the restart");
        await HostCommand.SyncAsync(target);

        // slabd's shutdown cannot detach a device still bound into a pod; its start-up removes the
        // leftover (the stale pod mount included), so kubelet's repeated calls find a clean node.
        await node.StopAsync();
        await node.StartProcessAsync();
        output.WriteLine(node.Log);

        await plugin.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging));
        await plugin.Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target));
        Assert.Equal("before the restart", await File.ReadAllTextAsync(Path.Combine(target, "before.txt")));
        await File.WriteAllTextAsync(Path.Combine(target, "after.txt"), "after the restart");
        await HostCommand.SyncAsync(target);

        await plugin.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
        await plugin.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
        await plugin.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
    }

    [Fact]
    public async Task With_keep_attachments_a_pods_mount_outlives_a_slabd_crash_and_its_writes_meanwhile_land()
    {
        await using var node = await SlabNode.StartAsync(4L << 30, "--keep-attachments");
        await using var plugin = await CsiPlugin.StartAsync(node.Endpoint);
        var dir = Path.Combine(node.Root, "kubelet");
        string staging = Path.Combine(dir, "staging"), target = Path.Combine(dir, "pod");
        Directory.CreateDirectory(staging);
        var volume = (await plugin.Controller.CreateVolumeAsync(Create("pvc-kept", 256L << 20))).Volume;
        await plugin.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging));
        await plugin.Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target));
        await File.WriteAllTextAsync(Path.Combine(target, "before.txt"), "before the crash");
        await HostCommand.SyncAsync(target);

        // The pod writes and fsyncs while slabd is dead; the write completes once slabd is back.
        await node.KillAsync();
        var meanwhile = EndToEnd.KeepAttachmentsTests.WriteDurablyAsync(Path.Combine(target, "meanwhile.txt"), "written while slabd was down"u8.ToArray());
        await node.StartProcessAsync("--keep-attachments");
        await meanwhile.WaitAsync(TimeSpan.FromSeconds(90));
        output.WriteLine(node.Log);

        // kubelet's repeated calls are no-ops on the live mounts; the pod reads both files.
        await plugin.Node.NodeStageVolumeAsync(Stage(volume.VolumeId, staging));
        await plugin.Node.NodePublishVolumeAsync(Publish(volume.VolumeId, staging, target));
        Assert.Equal("before the crash", await File.ReadAllTextAsync(Path.Combine(target, "before.txt")));
        Assert.Equal("written while slabd was down", await File.ReadAllTextAsync(Path.Combine(target, "meanwhile.txt")));
        var stats = await plugin.Node.NodeGetVolumeStatsAsync(new NodeGetVolumeStatsRequest { VolumeId = volume.VolumeId, VolumePath = target });
        Assert.False(stats.VolumeCondition.Abnormal, stats.VolumeCondition.Message);

        await plugin.Node.NodeUnpublishVolumeAsync(new NodeUnpublishVolumeRequest { VolumeId = volume.VolumeId, TargetPath = target });
        await plugin.Node.NodeUnstageVolumeAsync(new NodeUnstageVolumeRequest { VolumeId = volume.VolumeId, StagingTargetPath = staging });
        Assert.DoesNotContain(node.RunDirectory + "/attach", await HostCommand.CheckedAsync("losetup", "-a"), StringComparison.Ordinal);
        await plugin.Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
    }
}
