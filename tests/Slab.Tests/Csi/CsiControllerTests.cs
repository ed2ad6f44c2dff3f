using Csi.V1;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using static Slab.Tests.Csi.CsiRequests;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace Slab.Tests.Csi;

/// <summary>slab-csi's Identity and Controller against a real slabd, driven as external-provisioner, -snapshotter and -resizer drive them.</summary>
public sealed class CsiControllerTests(CsiFixture fixture) : IClassFixture<CsiFixture>
{
    private global::Csi.V1.Controller.ControllerClient Controller => fixture.Plugin.Controller;

    [Fact]
    public async Task Identity_names_the_driver_states_its_capabilities_and_probes_ready()
    {
        var info = await fixture.Plugin.Identity.GetPluginInfoAsync(new GetPluginInfoRequest());
        Assert.Equal("csi.slab.dev", info.Name);
        Assert.False(string.IsNullOrEmpty(info.VendorVersion));

        var capabilities = await fixture.Plugin.Identity.GetPluginCapabilitiesAsync(new GetPluginCapabilitiesRequest());
        var services = capabilities.Capabilities.Where(c => c.Service is not null).Select(c => c.Service.Type).ToList();
        Assert.Contains(PluginCapability.Types.Service.Types.Type.ControllerService, services);
        Assert.Contains(PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints, services);
        Assert.Contains(capabilities.Capabilities, c => c.VolumeExpansion?.Type == PluginCapability.Types.VolumeExpansion.Types.Type.Online);

        Assert.True((await fixture.Plugin.Identity.ProbeAsync(new ProbeRequest())).Ready);

        var controller = await Controller.ControllerGetCapabilitiesAsync(new ControllerGetCapabilitiesRequest());
        var rpcs = controller.Capabilities.Select(c => c.Rpc.Type).ToHashSet();
        foreach (var wanted in new[]
        {
            ControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteVolume, ControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteSnapshot,
            ControllerServiceCapability.Types.RPC.Types.Type.ListVolumes, ControllerServiceCapability.Types.RPC.Types.Type.ListSnapshots,
            ControllerServiceCapability.Types.RPC.Types.Type.CloneVolume, ControllerServiceCapability.Types.RPC.Types.Type.ExpandVolume,
            ControllerServiceCapability.Types.RPC.Types.Type.GetCapacity, ControllerServiceCapability.Types.RPC.Types.Type.GetVolume,
            ControllerServiceCapability.Types.RPC.Types.Type.VolumeCondition,
        })
        {
            Assert.Contains(wanted, rpcs);
        }

        Assert.DoesNotContain(ControllerServiceCapability.Types.RPC.Types.Type.PublishUnpublishVolume, rpcs);
    }

    [Fact]
    public async Task CreateVolume_is_idempotent_by_name_and_refuses_the_same_name_with_other_parameters()
    {
        var first = (await Controller.CreateVolumeAsync(Create("pvc-idem", 2 * GiB, parameters: ("repl", "1")))).Volume;
        var again = (await Controller.CreateVolumeAsync(Create("pvc-idem", 2 * GiB, parameters: ("repl", "1")))).Volume;
        Assert.Equal(first.VolumeId, again.VolumeId);
        Assert.Equal(2 * GiB, first.CapacityBytes);

        var size = await FailsAsync(StatusCode.AlreadyExists, () => Controller.CreateVolumeAsync(Create("pvc-idem", 3 * GiB)).ResponseAsync);
        Assert.Contains("size", size, StringComparison.Ordinal);
        var fs = await FailsAsync(StatusCode.AlreadyExists, () => Controller.CreateVolumeAsync(Create("pvc-idem", 2 * GiB, Mount("xfs"))).ResponseAsync);
        Assert.Contains("xfs", fs, StringComparison.Ordinal);

        await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = first.VolumeId });
        await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = first.VolumeId }); // gone: still success
        await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = "0123456789abcdef0123456789abcdef" });
    }

    [Fact]
    public async Task CreateVolume_refuses_what_it_cannot_honour_with_the_spec_codes()
    {
        await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("")).ResponseAsync);
        var noCaps = Create("pvc-nocaps");
        noCaps.VolumeCapabilities.Clear();
        await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(noCaps).ResponseAsync);
        var unknown = await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("pvc-bad", parameters: ("replicas", "2"))).ResponseAsync);
        Assert.Contains("replicas", unknown, StringComparison.Ordinal);
        var schedule = await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("pvc-bad", parameters: ("snap_schedule", "daily"))).ResponseAsync);
        Assert.Contains("schedules do not exist", schedule, StringComparison.Ordinal);
        await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("pvc-bad", parameters: ("repl", "4"))).ResponseAsync);
        await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("pvc-bad", parameters: ("block_size", "64k"))).ResponseAsync);
        var shared = await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("pvc-bad", capability: Mount(mode: Mode.MultiNodeMultiWriter))).ResponseAsync);
        Assert.Contains("one node at a time", shared, StringComparison.Ordinal);
        await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(Create("pvc-bad", capability: CsiRequests.Block(), parameters: ("fs", "ext4"))).ResponseAsync);

        var range = Create("pvc-bad");
        range.CapacityRange = new CapacityRange { RequiredBytes = 4097, LimitBytes = 8000 };
        await FailsAsync(StatusCode.OutOfRange, () => Controller.CreateVolumeAsync(range).ResponseAsync);
        await FailsAsync(StatusCode.OutOfRange, () => Controller.CreateVolumeAsync(Create("pvc-bad", 1L << 50)).ResponseAsync);
        var huge = await FailsAsync(StatusCode.ResourceExhausted, () => Controller.CreateVolumeAsync(Create("pvc-bad", 10L << 40)).ResponseAsync);
        Assert.Contains("pool", huge, StringComparison.Ordinal);
        var missingSource = Create("pvc-bad");
        missingSource.VolumeContentSource = new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = "0123456789abcdef0123456789abcdef@00" } };
        await FailsAsync(StatusCode.NotFound, () => Controller.CreateVolumeAsync(missingSource).ResponseAsync);

        // Nothing half-made: no volume of that name exists after all the refusals.
        var list = await Controller.ListVolumesAsync(new ListVolumesRequest());
        Assert.DoesNotContain(list.Entries, e => e.Volume.VolumeContext["name"] == "pvc-bad");
    }

    [Fact]
    public async Task Capacity_ranges_round_up_to_4_KiB_and_default_to_1_GiB()
    {
        var tiny = (await Controller.CreateVolumeAsync(Create("pvc-tiny", 1))).Volume;
        Assert.Equal(4096, tiny.CapacityBytes);
        var unset = Create("pvc-default");
        unset.CapacityRange = null;
        var defaulted = (await Controller.CreateVolumeAsync(unset)).Volume;
        Assert.Equal(GiB, defaulted.CapacityBytes);
        var capped = Create("pvc-capped");
        capped.CapacityRange = new CapacityRange { LimitBytes = 100 * 4096 + 5 };
        Assert.Equal(100 * 4096, (await Controller.CreateVolumeAsync(capped)).Volume.CapacityBytes);
        foreach (var v in new[] { tiny.VolumeId, defaulted.VolumeId })
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = v });
        var cappedId = (await Controller.CreateVolumeAsync(capped)).Volume.VolumeId;
        await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = cappedId });
    }

    [Fact]
    public async Task ListVolumes_pages_with_tokens_and_aborts_on_a_token_it_never_gave()
    {
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
            ids.Add((await Controller.CreateVolumeAsync(Create($"pvc-page-{i}", 64L << 20))).Volume.VolumeId);
        try
        {
            var seen = new List<string>();
            var token = "";
            var pages = 0;
            do
            {
                var page = await Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = 2, StartingToken = token });
                Assert.True(page.Entries.Count <= 2);
                seen.AddRange(page.Entries.Select(e => e.Volume.VolumeId));
                Assert.All(page.Entries, e => Assert.False(e.Status.VolumeCondition.Abnormal));
                token = page.NextToken;
                pages++;
            }
            while (token.Length > 0 && pages < 100);

            Assert.Equal(seen.Count, seen.Distinct().Count());
            Assert.Subset(seen.ToHashSet(), ids.ToHashSet());
            await FailsAsync(StatusCode.Aborted, () => Controller.ListVolumesAsync(new ListVolumesRequest { StartingToken = "not-a-token!" }).ResponseAsync);
            await FailsAsync(StatusCode.InvalidArgument, () => Controller.ListVolumesAsync(new ListVolumesRequest { MaxEntries = -1 }).ResponseAsync);
        }
        finally
        {
            foreach (var id in ids)
                await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = id });
        }
    }

    [Fact]
    public async Task GetVolume_ValidateCapabilities_and_GetCapacity_answer_from_slabd()
    {
        var volume = (await Controller.CreateVolumeAsync(Create("pvc-get", GiB, Mount("xfs")))).Volume;
        try
        {
            var got = await Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = volume.VolumeId });
            Assert.Equal(volume.VolumeId, got.Volume.VolumeId);
            Assert.False(got.Status.VolumeCondition.Abnormal);
            await FailsAsync(StatusCode.NotFound, () => Controller.ControllerGetVolumeAsync(new ControllerGetVolumeRequest { VolumeId = "0123456789abcdef0123456789abcdef" }).ResponseAsync);

            var ok = new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId };
            ok.VolumeCapabilities.Add(Mount("xfs"));
            Assert.NotNull((await Controller.ValidateVolumeCapabilitiesAsync(ok)).Confirmed);
            var wrongFs = new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId };
            wrongFs.VolumeCapabilities.Add(Mount("ext4"));
            var refused = await Controller.ValidateVolumeCapabilitiesAsync(wrongFs);
            Assert.Null(refused.Confirmed);
            Assert.Contains("xfs", refused.Message, StringComparison.Ordinal);
            var shared = new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId };
            shared.VolumeCapabilities.Add(Mount(mode: Mode.MultiNodeReaderOnly));
            Assert.Null((await Controller.ValidateVolumeCapabilitiesAsync(shared)).Confirmed);
            var missing = new ValidateVolumeCapabilitiesRequest { VolumeId = "0123456789abcdef0123456789abcdef" };
            missing.VolumeCapabilities.Add(Mount());
            await FailsAsync(StatusCode.NotFound, () => Controller.ValidateVolumeCapabilitiesAsync(missing).ResponseAsync);
            await FailsAsync(StatusCode.InvalidArgument, () => Controller.ValidateVolumeCapabilitiesAsync(new ValidateVolumeCapabilitiesRequest { VolumeId = volume.VolumeId }).ResponseAsync);

            var capacity = await Controller.GetCapacityAsync(new GetCapacityRequest());
            Assert.True(capacity.AvailableCapacity > GiB, $"available {capacity.AvailableCapacity}");
            Assert.True(capacity.MaximumVolumeSize > GiB);
            var three = new GetCapacityRequest();
            three.Parameters["repl"] = "3";
            Assert.Equal(0, (await Controller.GetCapacityAsync(three)).AvailableCapacity); // one node cannot hold three replicas
        }
        finally
        {
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
        }
    }

    [Fact]
    public async Task Snapshots_are_idempotent_by_name_listed_by_volume_and_id_and_keep_their_volume()
    {
        var a = (await Controller.CreateVolumeAsync(Create("pvc-snap-a", 256L << 20))).Volume;
        var b = (await Controller.CreateVolumeAsync(Create("pvc-snap-b", 256L << 20))).Volume;
        try
        {
            var snapshot = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-1", SourceVolumeId = a.VolumeId })).Snapshot;
            Assert.True(snapshot.ReadyToUse);
            Assert.Equal(a.VolumeId, snapshot.SourceVolumeId);
            Assert.Equal(256L << 20, snapshot.SizeBytes);
            Assert.NotNull(snapshot.CreationTime);
            var again = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-1", SourceVolumeId = a.VolumeId })).Snapshot;
            Assert.Equal(snapshot.SnapshotId, again.SnapshotId);
            await FailsAsync(StatusCode.AlreadyExists, () => Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-1", SourceVolumeId = b.VolumeId }).ResponseAsync);
            await FailsAsync(StatusCode.NotFound, () => Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-x", SourceVolumeId = "0123456789abcdef0123456789abcdef" }).ResponseAsync);
            await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateSnapshotAsync(new CreateSnapshotRequest { SourceVolumeId = a.VolumeId }).ResponseAsync);
            var second = (await Controller.CreateSnapshotAsync(new CreateSnapshotRequest { Name = "snapshot-2", SourceVolumeId = a.VolumeId })).Snapshot;

            var byVolume = await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a.VolumeId });
            Assert.Equal(new[] { snapshot.SnapshotId, second.SnapshotId }.Order(StringComparer.Ordinal), byVolume.Entries.Select(e => e.Snapshot.SnapshotId));
            var page = await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a.VolumeId, MaxEntries = 1 });
            Assert.Single(page.Entries);
            var rest = await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a.VolumeId, StartingToken = page.NextToken });
            Assert.Single(rest.Entries);
            Assert.Equal("", rest.NextToken);
            var byId = await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = second.SnapshotId });
            Assert.Equal(second.SnapshotId, Assert.Single(byId.Entries).Snapshot.SnapshotId);
            Assert.Empty((await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SnapshotId = "nope" })).Entries);
            Assert.Empty((await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = b.VolumeId })).Entries);

            var inUse = await FailsAsync(StatusCode.FailedPrecondition, () => Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = a.VolumeId }).ResponseAsync);
            Assert.Contains("snapshot", inUse, StringComparison.Ordinal);

            foreach (var id in new[] { snapshot.SnapshotId, second.SnapshotId, snapshot.SnapshotId, "garbage" })
                await Controller.DeleteSnapshotAsync(new DeleteSnapshotRequest { SnapshotId = id });
            Assert.Empty((await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a.VolumeId })).Entries);
        }
        finally
        {
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = a.VolumeId });
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = b.VolumeId });
        }
    }

    [Fact]
    public async Task Group_snapshots_are_idempotent_by_name_found_by_id_and_deleted_whole()
    {
        using var channel = ApiChannel.ForUnixSocket(fixture.Plugin.Socket);
        var group = new global::Csi.V1.GroupController.GroupControllerClient(channel);
        var capabilities = await group.GroupControllerGetCapabilitiesAsync(new GroupControllerGetCapabilitiesRequest());
        Assert.Equal(GroupControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteGetVolumeGroupSnapshot, Assert.Single(capabilities.Capabilities).Rpc.Type);
        var identity = await fixture.Plugin.Identity.GetPluginCapabilitiesAsync(new GetPluginCapabilitiesRequest());
        Assert.Contains(identity.Capabilities, c => c.Service?.Type == PluginCapability.Types.Service.Types.Type.GroupControllerService);

        var a = (await Controller.CreateVolumeAsync(Create("pvc-group-a", 128L << 20))).Volume;
        var b = (await Controller.CreateVolumeAsync(Create("pvc-group-b", 128L << 20))).Volume;
        try
        {
            var create = new CreateVolumeGroupSnapshotRequest { Name = "groupsnapshot-1" };
            create.SourceVolumeIds.Add([a.VolumeId, b.VolumeId]);
            var taken = (await group.CreateVolumeGroupSnapshotAsync(create)).GroupSnapshot;
            Assert.True(taken.ReadyToUse);
            Assert.Equal(2, taken.Snapshots.Count);
            Assert.All(taken.Snapshots, s => Assert.Equal(taken.GroupSnapshotId, s.GroupSnapshotId));
            Assert.Equal(new[] { a.VolumeId, b.VolumeId }.Order(StringComparer.Ordinal), taken.Snapshots.Select(s => s.SourceVolumeId).Order(StringComparer.Ordinal));
            var again = (await group.CreateVolumeGroupSnapshotAsync(create)).GroupSnapshot;
            Assert.Equal(taken.GroupSnapshotId, again.GroupSnapshotId);
            var other = new CreateVolumeGroupSnapshotRequest { Name = "groupsnapshot-1" };
            other.SourceVolumeIds.Add(a.VolumeId);
            await FailsAsync(StatusCode.AlreadyExists, () => group.CreateVolumeGroupSnapshotAsync(other).ResponseAsync);
            var missing = new CreateVolumeGroupSnapshotRequest { Name = "groupsnapshot-2" };
            missing.SourceVolumeIds.Add([a.VolumeId, "0123456789abcdef0123456789abcdef"]);
            await FailsAsync(StatusCode.NotFound, () => group.CreateVolumeGroupSnapshotAsync(missing).ResponseAsync);
            await FailsAsync(StatusCode.InvalidArgument, () => group.CreateVolumeGroupSnapshotAsync(new CreateVolumeGroupSnapshotRequest { Name = "groupsnapshot-3" }).ResponseAsync);
            Assert.DoesNotContain((await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = b.VolumeId })).Entries, e => e.Snapshot.GroupSnapshotId.Length == 0);

            var get = new GetVolumeGroupSnapshotRequest { GroupSnapshotId = taken.GroupSnapshotId };
            get.SnapshotIds.Add(taken.Snapshots.Select(s => s.SnapshotId));
            Assert.Equal(2, (await group.GetVolumeGroupSnapshotAsync(get)).GroupSnapshot.Snapshots.Count);
            var wrong = new GetVolumeGroupSnapshotRequest { GroupSnapshotId = taken.GroupSnapshotId };
            wrong.SnapshotIds.Add(taken.Snapshots[0].SnapshotId);
            await FailsAsync(StatusCode.InvalidArgument, () => group.GetVolumeGroupSnapshotAsync(wrong).ResponseAsync);
            await FailsAsync(StatusCode.NotFound, () => group.GetVolumeGroupSnapshotAsync(new GetVolumeGroupSnapshotRequest { GroupSnapshotId = "group.nope" }).ResponseAsync);

            // A member restores like any snapshot.
            var restore = Create("pvc-group-restored", 128L << 20);
            restore.VolumeContentSource = new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = taken.Snapshots[0].SnapshotId } };
            var restored = (await Controller.CreateVolumeAsync(restore)).Volume;
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = restored.VolumeId });

            var delete = new DeleteVolumeGroupSnapshotRequest { GroupSnapshotId = taken.GroupSnapshotId };
            delete.SnapshotIds.Add(get.SnapshotIds);
            await group.DeleteVolumeGroupSnapshotAsync(delete);
            await group.DeleteVolumeGroupSnapshotAsync(delete);
            Assert.Empty((await Controller.ListSnapshotsAsync(new ListSnapshotsRequest { SourceVolumeId = a.VolumeId })).Entries);
            await FailsAsync(StatusCode.NotFound, () => group.GetVolumeGroupSnapshotAsync(get).ResponseAsync);
        }
        finally
        {
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = a.VolumeId });
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = b.VolumeId });
        }
    }

    [Fact]
    public async Task A_clone_keeps_its_sources_filesystem_and_its_repeat_finds_it()
    {
        var source = (await Controller.CreateVolumeAsync(Create("pvc-xfs-source", 128L << 20, Mount("xfs")))).Volume;
        string? cloneId = null;
        try
        {
            var clone = Create("pvc-xfs-clone", 128L << 20, Mount());
            clone.VolumeContentSource = new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = source.VolumeId } };
            var made = (await Controller.CreateVolumeAsync(clone)).Volume;
            cloneId = made.VolumeId;
            Assert.Equal("xfs", made.VolumeContext["fs"]);
            Assert.Equal(source.VolumeId, made.ContentSource.Volume.VolumeId);
            Assert.Equal(cloneId, (await Controller.CreateVolumeAsync(clone)).Volume.VolumeId);
            var ext4 = Create("pvc-xfs-clone-2", 128L << 20, Mount("ext4"));
            ext4.VolumeContentSource = clone.VolumeContentSource;
            var refused = await FailsAsync(StatusCode.InvalidArgument, () => Controller.CreateVolumeAsync(ext4).ResponseAsync);
            Assert.Contains("holds xfs", refused, StringComparison.Ordinal);
        }
        finally
        {
            if (cloneId is not null)
                await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = cloneId });
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = source.VolumeId });
        }
    }

    [Fact]
    public async Task Expand_grows_the_volume_never_shrinks_and_is_idempotent()
    {
        var volume = (await Controller.CreateVolumeAsync(Create("pvc-grow", GiB))).Volume;
        try
        {
            var grown = await Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new CapacityRange { RequiredBytes = 2 * GiB } });
            Assert.Equal(2 * GiB, grown.CapacityBytes);
            Assert.True(grown.NodeExpansionRequired);
            var repeat = await Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new CapacityRange { RequiredBytes = GiB } });
            Assert.Equal(2 * GiB, repeat.CapacityBytes);
            await FailsAsync(StatusCode.OutOfRange, () => Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId, CapacityRange = new CapacityRange { RequiredBytes = GiB, LimitBytes = GiB } }).ResponseAsync);
            await FailsAsync(StatusCode.NotFound, () => Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = "0123456789abcdef0123456789abcdef", CapacityRange = new CapacityRange { RequiredBytes = GiB } }).ResponseAsync);
            await FailsAsync(StatusCode.InvalidArgument, () => Controller.ControllerExpandVolumeAsync(new ControllerExpandVolumeRequest { VolumeId = volume.VolumeId }).ResponseAsync);

            var modify = new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId };
            modify.MutableParameters["fs"] = "xfs";
            await FailsAsync(StatusCode.InvalidArgument, () => Controller.ControllerModifyVolumeAsync(modify).ResponseAsync);

            // QoS is mutable (a VolumeAttributesClass): slabd's volume takes the limits, online, idempotently.
            var qos = new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId };
            qos.MutableParameters["max_iops"] = "0,300";
            await Controller.ControllerModifyVolumeAsync(qos);
            await Controller.ControllerModifyVolumeAsync(qos);
            var inspected = await fixture.Node.CliJsonAsync("volume", "inspect", volume.VolumeId);
            var limits = (inspected.ValueKind == System.Text.Json.JsonValueKind.Array ? inspected[0] : inspected).GetProperty("spec").GetProperty("limits");
            Assert.Equal("300", limits.GetProperty("maxWriteIops").GetString());
            var badQos = new ControllerModifyVolumeRequest { VolumeId = volume.VolumeId };
            badQos.MutableParameters["max_bandwidth"] = "lots";
            await FailsAsync(StatusCode.InvalidArgument, () => Controller.ControllerModifyVolumeAsync(badQos).ResponseAsync);
        }
        finally
        {
            await Controller.DeleteVolumeAsync(new DeleteVolumeRequest { VolumeId = volume.VolumeId });
        }
    }
}
