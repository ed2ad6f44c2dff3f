using System.Globalization;
using Slab.Api.V1;

namespace Slab.Cli.Output;

/// <summary>Small renderings shared by the human-readable outputs.</summary>
internal static class Formats
{
    /// <summary>pxctl prints io priorities upper case: HIGH, MEDIUM, LOW.</summary>
    public static string IoPriority(IoPriority priority) => priority switch
    {
        Api.V1.IoPriority.High => "HIGH",
        Api.V1.IoPriority.Medium => "MEDIUM",
        Api.V1.IoPriority.Low => "LOW",
        _ => "-",
    };

    /// <summary>Unix milliseconds as "2025-03-01 12:34:56 UTC"; 0 as "-".</summary>
    public static string Time(long unixMs) => unixMs <= 0
        ? "-"
        : DateTimeOffset.FromUnixTimeMilliseconds(unixMs).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture);

    /// <summary>"5s ago", "3m ago", "2h ago", "4d ago" before <paramref name="now"/>; 0 as "never".</summary>
    public static string Age(long unixMs, DateTimeOffset now)
    {
        if (unixMs <= 0)
            return "never";
        // A clock a little ahead of ours is not "in the future" to a person reading the table.
        var age = now - DateTimeOffset.FromUnixTimeMilliseconds(unixMs);
        var seconds = Math.Max(0L, (long)age.TotalSeconds);
        return seconds switch
        {
            < 60 => $"{seconds}s ago",
            < 3600 => $"{seconds / 60}m ago",
            < 2 * 86400 => $"{seconds / 3600}h ago",
            _ => $"{seconds / 86400}d ago",
        };
    }

    /// <summary>"2025-03-01 12:34:56 UTC (5s ago)"; 0 as "never".</summary>
    public static string TimeAndAge(long unixMs, DateTimeOffset now) =>
        unixMs <= 0 ? "never" : $"{Time(unixMs)} ({Age(unixMs, now)})";

    public static string YesNo(bool value) => value ? "yes" : "no";

    /// <summary>The text, or "-" when it is empty.</summary>
    public static string OrDash(string text) => text.Length == 0 ? "-" : text;

    /// <summary>A node as people know it: its name, or its id when it has none.</summary>
    public static string Node(string name, string id) => name.Length > 0 ? name : id;

    /// <summary>"node-1 (n1)": name and id, or whichever of them is known.</summary>
    public static string NodeWithId(string name, string id) =>
        name.Length > 0 && id.Length > 0 && name != id ? $"{name} ({id})" : Node(name, id);

    /// <summary>Replica count with proto's "0 means 1".</summary>
    public static uint Ha(VolumeSpec? spec) => spec is null || spec.Repl == 0 ? 1 : spec.Repl;

    /// <summary>"any node", or the constraints: "only on a,b; zones z1,z2; racks r1".</summary>
    public static string Placement(VolumeSpec? spec)
    {
        if (spec is null)
            return "any node";
        var parts = new List<string>(3);
        if (spec.Nodes.Count > 0)
            parts.Add("only on " + string.Join(",", spec.Nodes));
        if (spec.Zones.Count > 0)
            parts.Add((spec.Zones.Count == 1 ? "zone " : "zones ") + string.Join(",", spec.Zones));
        if (spec.Racks.Count > 0)
            parts.Add((spec.Racks.Count == 1 ? "rack " : "racks ") + string.Join(",", spec.Racks));
        return parts.Count == 0 ? "any node" : string.Join("; ", parts);
    }

    public static string Fs(VolumeSpec? spec) => string.IsNullOrEmpty(spec?.Fs) ? "ext4" : spec.Fs;

    public static string Labels(IEnumerable<KeyValuePair<string, string>> labels)
    {
        var text = string.Join(",", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
        return text.Length == 0 ? "-" : text;
    }

    /// <summary>"up - attached on node-2" or "up - detached", as in pxctl's volume list.</summary>
    /// <summary>The attachment method of a detached volume's internal resync attachment (no host device).</summary>
    public const string ResyncMethod = "resync";

    public static string VolumeStatus(Volume volume)
    {
        var state = string.IsNullOrEmpty(volume.State) ? "unknown" : volume.State;
        if (volume.Attachment is null)
            return $"{state} - detached";
        if (volume.Attachment.Method == ResyncMethod)
            return $"{state} - detached, resync by {Node(volume.Attachment.NodeName, volume.Attachment.NodeId)}";
        return $"{state} - attached on {Node(volume.Attachment.NodeName, volume.Attachment.NodeId)}";
    }

    /// <summary>The nodes holding the volume's replicas, "node-1,node-2"; "-" when none is known.</summary>
    public static string ReplicaNodes(Volume volume) =>
        OrDash(string.Join(",", volume.Replicas.Select(r => Node(r.NodeName, r.NodeId))));

    public static string Number(double value, string format = "0.#") => value.ToString(format, CultureInfo.InvariantCulture);
}
