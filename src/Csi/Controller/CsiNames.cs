using System.Security.Cryptography;
using System.Text;
using Slab.Common;

namespace Slab.Csi.Controller;

/// <summary>
/// CSI names (the CO's idempotency keys) as slabd volume and snapshot names, and CSI snapshot ids.
/// Kubernetes' names (pvc-UUID, snapshot-UUID) are valid slabd names and kept as they are; any other
/// name maps to a stable "csi-" + hash name, so a repeat finds the same volume.
/// </summary>
internal static class CsiNames
{
    /// <summary>The slabd name for a CSI name (kept when slabd's <see cref="VolumeNames.IsValid"/> accepts it).</summary>
    public static string ToSlab(string csiName)
    {
        // "group." names are the members of group snapshots; a CSI name never takes that form here.
        if (VolumeNames.IsValid(csiName) && !IsGroupSnapshotName(csiName))
            return csiName;
        return "csi-" + Hash(csiName);
    }

    private const string GroupPrefix = "group.";

    /// <summary>
    /// The slabd snapshot name of every member of a group snapshot, and the group's CSI id:
    /// "group." + the CSI name (hashed when that would not be a valid slabd name).
    /// </summary>
    public static string ToGroupSnapshotName(string csiName) =>
        VolumeNames.IsValid(GroupPrefix + csiName) ? GroupPrefix + csiName : GroupPrefix + "csi-" + Hash(csiName);

    /// <summary>Whether a slabd snapshot name is a group member's.</summary>
    public static bool IsGroupSnapshotName(string name) => name.StartsWith(GroupPrefix, StringComparison.Ordinal);

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)))[..40];

    /// <summary>A CSI snapshot id: "VOLUMEID@SNAPSHOTID" (slabd's own "VOL@SNAP" reference, with ids).</summary>
    public static string SnapshotId(string volumeId, string snapshotId) => volumeId + "@" + snapshotId;

    /// <summary>Splits a CSI snapshot id; false when it is not one slab-csi made.</summary>
    public static bool TrySplitSnapshotId(string id, out string volumeId, out string snapshotId)
    {
        var at = id.IndexOf('@', StringComparison.Ordinal);
        volumeId = at > 0 ? id[..at] : "";
        snapshotId = at > 0 ? id[(at + 1)..] : "";
        return at > 0 && snapshotId.Length > 0 && !snapshotId.Contains('@', StringComparison.Ordinal);
    }
}
