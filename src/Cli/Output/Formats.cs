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

    /// <summary>Replica count with proto's "0 means 1".</summary>
    public static uint Ha(VolumeSpec? spec) => spec is null || spec.Repl == 0 ? 1 : spec.Repl;

    public static string Fs(VolumeSpec? spec) => string.IsNullOrEmpty(spec?.Fs) ? "ext4" : spec.Fs;

    public static string Labels(IEnumerable<KeyValuePair<string, string>> labels)
    {
        var text = string.Join(",", labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
        return text.Length == 0 ? "-" : text;
    }

    /// <summary>"up - attached on node-2" or "up - detached", as in pxctl's volume list.</summary>
    public static string VolumeStatus(Volume volume)
    {
        var state = string.IsNullOrEmpty(volume.State) ? "unknown" : volume.State;
        if (volume.Attachment is null)
            return $"{state} - detached";
        var where = string.IsNullOrEmpty(volume.Attachment.NodeName) ? volume.Attachment.NodeId : volume.Attachment.NodeName;
        return $"{state} - attached on {where}";
    }

    public static string Number(double value, string format = "0.#") => value.ToString(format, CultureInfo.InvariantCulture);
}
