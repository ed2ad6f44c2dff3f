using Slab.Api.V1;

namespace Slab.Cli.Output;

/// <summary>Human-readable volumes and snapshots, laid out like pxctl's.</summary>
internal static class VolumeViews
{
    public static void WriteList(IEnumerable<Volume> volumes, TextWriter o)
    {
        var table = new Table("ID", "NAME", "SIZE", "HA", "SHARED", "ENCRYPTED", "IO_PRIORITY", "STATUS", "SNAP-ENABLED");
        foreach (var v in volumes)
        {
            table.AddRow(v.Id, v.Name, Sizes.Format(v.Spec?.SizeBytes ?? 0),
                Formats.Ha(v.Spec).ToString(System.Globalization.CultureInfo.InvariantCulture),
                "no", "no", Formats.IoPriority(v.Spec?.IoPriority ?? IoPriority.Unspecified), Formats.VolumeStatus(v), "no");
        }
        table.Write(o);
    }

    public static void WriteInspect(Volume v, TextWriter o)
    {
        var a = v.Attachment;
        var block = new KeyValueBlock()
            .Add("Volume", v.Id)
            .Add("Name", v.Name)
            .Add("Size", Sizes.Format(v.Spec?.SizeBytes ?? 0))
            .Add("Format", Formats.Fs(v.Spec) + (v.Formatted ? "" : " (not formatted yet)"))
            .Add("HA", Formats.Ha(v.Spec).ToString(System.Globalization.CultureInfo.InvariantCulture))
            .Add("IO Priority", Formats.IoPriority(v.Spec?.IoPriority ?? IoPriority.Unspecified))
            .Add("Creation time", Formats.Time(v.CreatedUnixMs))
            .Add("Shared", "no")
            .Add("Labels", Formats.Labels(v.Spec?.Labels ?? []))
            .Add("Status", string.IsNullOrEmpty(v.State) ? "unknown" : v.State)
            .Add("State", a is null ? "Detached" : $"Attached: {Node(a.NodeName, a.NodeId)}{(a.Method.Length > 0 ? $" ({a.Method})" : "")}")
            .Add("Device Path", a is null || a.DevicePath.Length == 0 ? "-" : a.DevicePath)
            .Add("Mount paths", a is null || a.MountPaths.Count == 0 ? "-" : string.Join(", ", a.MountPaths))
            .Raw("Replica sets on nodes:")
            .Raw("\tSet 0");
        if (v.Replicas.Count == 0)
            block.Raw("\t  (none)");
        foreach (var r in v.Replicas)
        {
            var pool = r.PoolId.Length > 0 ? $" (Pool {r.PoolId})" : "";
            var state = r.State.Length > 0 ? $", {r.State}" : "";
            block.Raw($"\t  Node  :  {Node(r.NodeName, r.NodeId)}{pool}{state}");
        }
        block
            .Add("Used", Sizes.Format(v.UsedBytes))
            .Add("Snapshots", v.SnapshotCount.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .Add("Source", v.Source.Length == 0 ? "-" : v.Source)
            .Write(o, "");
    }

    public static void WriteSnapshots(IEnumerable<Snapshot> snapshots, TextWriter o)
    {
        var table = new Table("ID", "NAME", "VOLUME", "SIZE", "CREATED");
        foreach (var s in snapshots)
            table.AddRow(s.Id, s.Name, s.VolumeName.Length > 0 ? s.VolumeName : s.VolumeId, Sizes.Format(s.SizeBytes), Formats.Time(s.CreatedUnixMs));
        table.Write(o);
    }

    private static string Node(string name, string id) => name.Length > 0 ? name : id;
}
