using System.Globalization;
using Slab.Api.V1;

namespace Slab.Cli.Output;

/// <summary>Human-readable volumes and snapshots, laid out like pxctl's.</summary>
internal static class VolumeViews
{
    private static readonly Column<Volume>[] _listColumns =
    [
        new("ID", v => v.Id),
        new("NAME", v => v.Name),
        new("SIZE", v => Sizes.Format(v.Spec?.SizeBytes ?? 0)),
        new("HA", v => Formats.Ha(v.Spec).ToString(CultureInfo.InvariantCulture)),
        new("SHARED", _ => "no"),
        new("ENCRYPTED", _ => "no"),
        new("IO_PRIORITY", v => Formats.IoPriority(v.Spec?.IoPriority ?? IoPriority.Unspecified)),
        new("STATUS", Formats.VolumeStatus),
        new("SNAP-ENABLED", _ => "no"),
        // Last: where the replicas live, the one column whose width grows with the cluster.
        new("NODES", Formats.ReplicaNodes),
    ];

    private static readonly Column<Snapshot>[] _snapshotColumns =
    [
        new("ID", s => s.Id),
        new("NAME", s => s.Name),
        new("VOLUME", s => Formats.Node(s.VolumeName, s.VolumeId)),
        new("SIZE", s => Sizes.Format(s.SizeBytes)),
        new("CREATED", s => Formats.Time(s.CreatedUnixMs)),

        // Cluster: the nodes whose replicas hold the snapshot; "-" on a single node.
        new("NODES", s => s.Nodes.Count == 0 ? "-" : string.Join(",", s.Nodes)),
    ];

    public static void WriteList(IEnumerable<Volume> volumes, TextWriter o) => Table.From(volumes, _listColumns).Write(o);

    public static void WriteInspect(Volume v, TextWriter o, VolumeStats? stats = null)
    {
        var a = v.Attachment;
        var block = new KeyValueBlock()
            .Add("Volume", v.Id)
            .Add("Name", v.Name)
            .Add("Size", Sizes.Format(v.Spec?.SizeBytes ?? 0))
            .Add("Format", Formats.Fs(v.Spec) + (v.Formatted ? "" : " (not formatted yet)"))
            .Add("HA", Formats.Ha(v.Spec).ToString(CultureInfo.InvariantCulture))
            .Add("IO Priority", Formats.IoPriority(v.Spec?.IoPriority ?? IoPriority.Unspecified))
            .Add("QoS", Parsing.IoLimitParser.Describe(v.Spec?.Limits))
            .Add("Placement", Formats.Placement(v.Spec))
            .Add("Creation time", Formats.Time(v.CreatedUnixMs))
            .Add("Shared", "no")
            .Add("Labels", Formats.Labels(v.Spec?.Labels ?? []))
            .Add("Status", string.IsNullOrEmpty(v.State) ? "unknown" : v.State)
            .Add("Epoch", v.Epoch.ToString(CultureInfo.InvariantCulture))
            .Add("State", a is null ? "Detached"
                : a.Method == Formats.ResyncMethod ? $"Detached (its replicas are resynced by {Formats.Node(a.NodeName, a.NodeId)})"
                : $"Attached: {Formats.Node(a.NodeName, a.NodeId)}{(a.Method.Length > 0 ? $" ({a.Method})" : "")}")
            .Add("Device Path", a is null || a.DevicePath.Length == 0 ? "-" : a.DevicePath)
            .Add("Mount paths", a is null || a.MountPaths.Count == 0 ? "-" : string.Join(", ", a.MountPaths))
            .Raw("Replica sets on nodes:")
            .Raw("\tSet 0");
        if (v.Replicas.Count == 0)
            block.Raw("\t  (none)");
        foreach (var r in v.Replicas)
        {
            var pool = r.PoolId.Length > 0 ? $" (Pool {r.PoolId})" : "";
            var state = (r.State.Length > 0 ? $", {r.State}" : "") + (r.NodeOnline ? "" : ", node offline");
            var progress = (r.Replaces.Length > 0 ? $", replaces {r.Replaces}" : "") + (r.Progress is { } p ? ", " + Progress(p) : "");
            block.Raw($"\t  Node  :  {Formats.Node(r.NodeName, r.NodeId)}{pool}{state}{progress}");
        }
        block
            .Add("Used", Sizes.Format(v.UsedBytes))
            .Add("Snapshots", v.SnapshotCount.ToString(CultureInfo.InvariantCulture))
            .Add("Source", v.Source.Length == 0 ? "-" : v.Source);
        if (stats is { Active: true } s)
        {
            block
                .Add("I/O counted", $"on {Formats.Node(s.NodeName, s.NodeId)} since {Formats.Time(s.SinceUnixMs)}")
                .Add("Reads", Totals(s.Reads))
                .Add("Writes", Totals(s.Writes))
                .Add("Flushes", Totals(s.Flushes))
                .Add("Discards", Totals(s.Discards))
                .Add("In flight", s.InFlight.ToString(CultureInfo.InvariantCulture))
                .Add("QoS wait", $"{s.ThrottledUs / 1000.0:0.0} ms");
        }

        block.Write(o, "");
    }

    /// <summary>"1,024 ops, 4 MiB, 0 errors, avg 120 µs".</summary>
    private static string Totals(IoTotals t)
    {
        var latency = t.Operations == 0 ? "" : $", avg {t.TotalLatencyUs / t.Operations:N0} µs";
        return $"{t.Operations:N0} ops, {Sizes.Format(t.Bytes)}, {t.Errors:N0} errors{latency}";
    }

    /// <summary>"42.0% (120 MiB copied, 85.3 MiB/s, ETA 3s)".</summary>
    public static string Progress(ResyncProgress p)
    {
        var eta = p.EtaSeconds > 0 ? $", ETA {TimeSpan.FromSeconds(Math.Ceiling(p.EtaSeconds)):g}" : "";
        var kind = p.Rebuild ? "rebuild" : "resync";
        return $"{kind} {p.Percent.ToString("0.0", CultureInfo.InvariantCulture)}% ({Sizes.Format(p.BytesCopied)} copied, {Sizes.Format((ulong)p.BytesPerSecond)}/s{eta})";
    }

    /// <summary>What <c>volume check</c> prints.</summary>
    public static string CheckSummary(string volume, CheckVolumeResponse r)
    {
        if (r.Replicas.Count < 2)
            return $"Volume {volume}: {r.Replicas.Count} in-sync replica ({string.Join(", ", r.Replicas)}); nothing to compare.";
        var head = $"Volume {volume}: compared {Sizes.Format(r.BytesCompared)} on replicas {string.Join(", ", r.Replicas)} (on {r.NodeName}): ";
        if (r.DifferingRegions == 0)
            return head + "no differences.";
        var listed = string.Join(", ", r.DifferingOffsets.Take(10).Select(o => $"@{o}"));
        var more = r.DifferingRegions > 10 ? $" and {r.DifferingRegions - 10} more" : "";
        return head + $"{r.DifferingRegions} region(s) of {Sizes.Format(r.RegionBytes)} differ: {listed}{more}.";
    }

    public static void WriteSnapshots(IEnumerable<Snapshot> snapshots, TextWriter o) => Table.From(snapshots, _snapshotColumns).Write(o);
}
