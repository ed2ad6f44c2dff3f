extern alias cli;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using V1 = cli::Slab.Api.V1;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// The gRPC API validates on its own (slabctl checks some input first, other clients don't): every
/// bad request gets a status with a message, and nothing is created.
/// </summary>
public sealed class ApiBadInputTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private SlabNode Node => fixture.Node;

    public static TheoryData<string, ulong, uint, string, int, StatusCode, string> BadCreates => new()
    {
        { "", 1UL << 30, 1, "ext4", 0, StatusCode.InvalidArgument, "name is empty" },
        { "bad name", 1UL << 30, 1, "ext4", 0, StatusCode.InvalidArgument, "invalid volume name" },
        { new string('x', 200), 1UL << 30, 1, "ext4", 0, StatusCode.InvalidArgument, "invalid volume name" },
        { "api-zero", 0, 1, "ext4", 0, StatusCode.InvalidArgument, "greater than 0" },
        { "api-huge", ulong.MaxValue, 1, "ext4", 0, StatusCode.InvalidArgument, "over the limit" },
        { "api-repl", 1UL << 30, 7, "ext4", 0, StatusCode.InvalidArgument, "repl must be 1, 2 or 3" },
        { "api-repl3", 1UL << 30, 3, "ext4", 0, StatusCode.FailedPrecondition, "--repl 3 needs a cluster" },
        { "api-fs", 1UL << 30, 1, "zfs", 0, StatusCode.InvalidArgument, "unsupported filesystem" },
        { "api-prio", 1UL << 30, 1, "ext4", 42, StatusCode.InvalidArgument, "unknown io priority" },
    };

    [Theory]
    [MemberData(nameof(BadCreates))]
    public async Task Bad_creates_are_refused_with_a_status_and_create_nothing(string name, ulong size, uint repl, string fs, int priority, StatusCode code, string message)
    {
        using var channel = ApiChannel.ForUnixSocket(Node.ApiSocket);
        var volumes = new V1.Volumes.VolumesClient(channel);
        var before = (await volumes.EnumerateAsync(new V1.EnumerateVolumesRequest())).Volumes.Count;
        var request = new V1.CreateVolumeRequest
        {
            Name = name,
            Spec = new V1.VolumeSpec { SizeBytes = size, Repl = repl, Fs = fs, IoPriority = (V1.IoPriority)priority },
        };
        var ex = await Assert.ThrowsAsync<RpcException>(async () => await volumes.CreateAsync(request));
        Assert.Equal(code, ex.StatusCode);
        Assert.Contains(message, ex.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(before, (await volumes.EnumerateAsync(new V1.EnumerateVolumesRequest())).Volumes.Count);
    }

    [Fact]
    public async Task Bad_labels_unknown_names_and_missing_specs_are_refused()
    {
        using var channel = ApiChannel.ForUnixSocket(Node.ApiSocket);
        var volumes = new V1.Volumes.VolumesClient(channel);
        var snapshots = new V1.Snapshots.SnapshotsClient(channel);
        var mounts = new V1.MountAttach.MountAttachClient(channel);

        var badLabel = new V1.CreateVolumeRequest { Name = "api-label", Spec = new V1.VolumeSpec { SizeBytes = 1UL << 30 } };
        badLabel.Spec.Labels.Add("bad key!", "v");
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(async () => await volumes.CreateAsync(badLabel))).StatusCode);

        var noSpec = await Assert.ThrowsAsync<RpcException>(async () => await volumes.CreateAsync(new V1.CreateVolumeRequest { Name = "api-nospec" }));
        Assert.Equal(StatusCode.InvalidArgument, noSpec.StatusCode);

        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(async () => await volumes.InspectAsync(new V1.InspectVolumeRequest { Volume = "nope" }))).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(async () => await volumes.InspectAsync(new V1.InspectVolumeRequest()))).StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(async () => await snapshots.EnumerateAsync(new V1.EnumerateSnapshotsRequest { Volume = "nope" }))).StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(async () => await mounts.AttachAsync(new V1.AttachRequest { Volume = "nope" }))).StatusCode);
        Assert.Equal(StatusCode.InvalidArgument, (await Assert.ThrowsAsync<RpcException>(async () => await volumes.UpdateAsync(new V1.UpdateVolumeRequest { Volume = "nope", SizeBytes = 0 }))).StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Assert.ThrowsAsync<RpcException>(async () => await volumes.CloneAsync(new V1.CloneVolumeRequest { Source = "nope@snap", Name = "c" }))).StatusCode);

        await volumes.CreateAsync(new V1.CreateVolumeRequest { Name = "api-ok", Spec = new V1.VolumeSpec { SizeBytes = 1UL << 30 } });
        var badSnapshot = await Assert.ThrowsAsync<RpcException>(async () => await snapshots.CreateAsync(new V1.CreateSnapshotRequest { Volume = "api-ok", Name = "a/b" }));
        Assert.Equal(StatusCode.InvalidArgument, badSnapshot.StatusCode);
        var relative = await Assert.ThrowsAsync<RpcException>(async () => await mounts.MountAsync(new V1.MountRequest { Volume = "api-ok", Path = "relative" }));
        Assert.Equal(StatusCode.InvalidArgument, relative.StatusCode);
        Assert.Single((await volumes.EnumerateAsync(new V1.EnumerateVolumesRequest())).Volumes, v => v.Name.StartsWith("api-", StringComparison.Ordinal));
    }
}
