using Csi.V1;
using Mode = global::Csi.V1.VolumeCapability.Types.AccessMode.Types.Mode;

namespace Slab.Csi;

/// <summary>What Slab volumes support of CSI's volume capabilities, and why not when they do not.</summary>
internal static class VolumeCapabilities
{
    /// <summary>
    /// Null when Slab supports the capability; else why not. Slab volumes attach on one node at a
    /// time (no shared volumes yet), as a block device or with ext4/xfs.
    /// </summary>
    public static string? Unsupported(VolumeCapability capability)
    {
        var mode = capability.AccessMode?.Mode ?? Mode.Unknown;
        if (mode is not (Mode.SingleNodeWriter or Mode.SingleNodeReaderOnly or Mode.SingleNodeSingleWriter or Mode.SingleNodeMultiWriter))
        {
            return mode == Mode.Unknown
                ? "volume_capability.access_mode is required"
                : $"access mode {mode} is not supported: Slab volumes attach on one node at a time (shared volumes do not exist yet); use a SINGLE_NODE_* mode";
        }

        switch (capability.AccessTypeCase)
        {
            case VolumeCapability.AccessTypeOneofCase.Block:
                return null;
            case VolumeCapability.AccessTypeOneofCase.Mount:
                var fs = capability.Mount.FsType;
                return fs is "" or "ext4" or "xfs" ? null : $"fs_type '{fs}' is not supported; Slab formats ext4 or xfs";
            default:
                return "volume_capability needs an access type: block or mount";
        }
    }

    /// <summary>Throws INVALID_ARGUMENT unless every capability is given and supported.</summary>
    public static void Require(IReadOnlyCollection<VolumeCapability> capabilities, string field = "volume_capabilities")
    {
        if (capabilities.Count == 0)
            throw CsiException.Missing(field);
        foreach (var capability in capabilities)
        {
            if (Unsupported(capability) is { } why)
                throw CsiException.InvalidArgument(why);
        }
    }

    public static bool IsBlock(VolumeCapability capability) => capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Block;

    public static bool IsReadOnlyMode(VolumeCapability capability) => capability.AccessMode?.Mode == Mode.SingleNodeReaderOnly;
}
