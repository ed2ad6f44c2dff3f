using Csi.V1;
using Grpc.Core;
using Xunit;
using Mode = Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace Slab.Tests.Csi;

/// <summary>Requests as the sidecars and kubelet build them.</summary>
internal static class CsiRequests
{
    public const long GiB = 1L << 30;

    public static VolumeCapability Mount(string fsType = "", Mode mode = Mode.SingleNodeWriter, params string[] flags)
    {
        var mount = new VolumeCapability.Types.MountVolume { FsType = fsType };
        mount.MountFlags.Add(flags);
        return new VolumeCapability { Mount = mount, AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode } };
    }

    public static VolumeCapability Block(Mode mode = Mode.SingleNodeWriter) =>
        new() { Block = new VolumeCapability.Types.BlockVolume(), AccessMode = new VolumeCapability.Types.AccessMode { Mode = mode } };

    public static CreateVolumeRequest Create(string name, long requiredBytes = GiB, VolumeCapability? capability = null, params (string Key, string Value)[] parameters)
    {
        var request = new CreateVolumeRequest
        {
            Name = name,
            CapacityRange = new CapacityRange { RequiredBytes = requiredBytes },
        };
        request.VolumeCapabilities.Add(capability ?? Mount());
        foreach (var (key, value) in parameters)
            request.Parameters[key] = value;
        return request;
    }

    public static NodeStageVolumeRequest Stage(string volumeId, string stagingPath, VolumeCapability? capability = null) =>
        new() { VolumeId = volumeId, StagingTargetPath = stagingPath, VolumeCapability = capability ?? Mount() };

    public static NodePublishVolumeRequest Publish(string volumeId, string stagingPath, string targetPath, VolumeCapability? capability = null, bool readOnly = false) =>
        new() { VolumeId = volumeId, StagingTargetPath = stagingPath, TargetPath = targetPath, VolumeCapability = capability ?? Mount(), Readonly = readOnly };

    /// <summary>The call fails with <paramref name="code"/>; returns its message.</summary>
    public static async Task<string> FailsAsync(StatusCode code, Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(ex.StatusCode == code, $"expected {code}, got {ex.StatusCode}: {ex.Status.Detail}");
        Assert.False(string.IsNullOrWhiteSpace(ex.Status.Detail));
        return ex.Status.Detail;
    }
}
