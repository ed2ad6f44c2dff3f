namespace Slab.Store;

/// <summary>A prepared drive: labeled, formatted XFS (reflink), mounted under the run directory.</summary>
public sealed class Drive(string path, string mountPath, DriveLabel label)
{
    /// <summary>The block device or file the drive was given as.</summary>
    public string Path { get; } = path;

    /// <summary>Where its filesystem is mounted.</summary>
    public string MountPath { get; } = mountPath;

    public DriveLabel Label { get; internal set; } = label;

    public string Id => Label.DriveId;

    /// <summary>Slab's directory at the root of the drive's filesystem.</summary>
    public string SlabDirectory => System.IO.Path.Combine(MountPath, "slab");

    /// <summary>One subdirectory per volume replica.</summary>
    public string VolumesDirectory => System.IO.Path.Combine(SlabDirectory, "volumes");

    public string LabelPath => System.IO.Path.Combine(SlabDirectory, "drive.json");

    /// <summary>Total and used bytes of the drive's filesystem now (statfs).</summary>
    public (long Total, long Used) ReadCapacity()
    {
        var info = new DriveInfo(MountPath);
        var total = info.TotalSize;
        return (total, total - info.TotalFreeSpace);
    }
}
