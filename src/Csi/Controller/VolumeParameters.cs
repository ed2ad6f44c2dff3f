using System.Globalization;
using Slab.Api.V1;

namespace Slab.Csi.Controller;

/// <summary>
/// A StorageClass's parameters (and VolumeAttributesClass's mutable parameters) in PX's names, parsed
/// strictly: an unknown key or a bad value is refused (INVALID_ARGUMENT), never defaulted silently.
/// Null / empty members were not given.
/// </summary>
internal sealed record VolumeParameters
{
    /// <summary>Keys the CO adds about the claim (external-provisioner's --extra-create-metadata).</summary>
    public const string CoMetadataPrefix = "csi.storage.k8s.io/";

    /// <summary>Labels slab-csi sets from the CO's metadata (PX sets the same).</summary>
    private static readonly Dictionary<string, string> s_metadataLabels = new(StringComparer.Ordinal)
    {
        ["csi.storage.k8s.io/pvc/name"] = "pvc",
        ["csi.storage.k8s.io/pvc/namespace"] = "namespace",
        ["csi.storage.k8s.io/pv/name"] = "pv",
    };

    /// <summary>Slab volumes have 4 KiB blocks; <c>block_size</c> may only say so.</summary>
    public const int BlockSize = 4096;

    public uint? Repl { get; init; }

    /// <summary>"ext4", "xfs" or "none".</summary>
    public string? Fs { get; init; }

    public IoPriority? IoPriority { get; init; }

    /// <summary>QoS from <c>max_iops</c> / <c>max_bandwidth</c> (pxctl's syntax: R,W or one number; MB/s); only the fields given are set.</summary>
    public IoLimits? Limits { get; init; }

    public IReadOnlyList<string> Nodes { get; init; } = [];

    public IReadOnlyList<string> Zones { get; init; } = [];

    public IReadOnlyList<string> Racks { get; init; } = [];

    /// <summary>From <c>label</c> and the CO's metadata.</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// INVALID_ARGUMENT unless every key is the CO's own metadata (<see cref="CoMetadataPrefix"/>):
    /// for calls that take no settings (snapshot classes). <paramref name="what"/> is "snapshot" or "group snapshot".
    /// </summary>
    public static void RequireOnlyCoMetadata(IEnumerable<string> keys, string what)
    {
        if (keys.FirstOrDefault(k => !k.StartsWith(CoMetadataPrefix, StringComparison.Ordinal)) is { } key)
            throw CsiException.InvalidArgument($"unknown {what} parameter '{key}'; Slab {what}s take no parameters");
    }

    /// <summary>The keys <see cref="ParseMutable"/> accepts (ControllerModifyVolume, CreateVolume's mutable_parameters).</summary>
    public static readonly string[] MutableKeys = ["repl", "io_priority", "priority_io", "max_iops", "max_bandwidth"];

    /// <summary>StorageClass parameters: every PX key Slab supports; <paramref name="mutable"/> (may be empty) overrides.</summary>
    public static VolumeParameters Parse(IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> mutable)
    {
        var result = new VolumeParameters();
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in parameters)
        {
            if (key.StartsWith(CoMetadataPrefix, StringComparison.Ordinal))
            {
                if (s_metadataLabels.TryGetValue(key, out var label) && value.Length > 0)
                    labels[label] = value;
                continue; // the CO's own metadata, not a setting
            }

            result = key switch
            {
                "repl" => result with { Repl = ParseRepl(value) },
                "fs" => result with { Fs = ParseFs(value) },
                "io_priority" or "priority_io" => result with { IoPriority = ParsePriority(key, value) },
                "max_iops" or "max_bandwidth" => result with { Limits = ParseLimits(key, value, result.Limits) },
                "nodes" => result with { Nodes = ParseList(key, value) },
                "zones" => result with { Zones = ParseList(key, value) },
                "racks" => result with { Racks = ParseList(key, value) },
                "label" => result with { Labels = ParseLabels(value, labels) },
                "block_size" => CheckBlockSize(value, result),
                "snap_schedule" => throw CsiException.InvalidArgument("parameter snap_schedule: snapshot schedules do not exist in Slab yet; take snapshots with VolumeSnapshot objects (or slabctl volume snapshot create) until they do"),
                "secure" => ParseBool(key, value) ? throw CsiException.InvalidArgument("parameter secure: encrypted volumes do not exist in Slab yet; remove secure or set it to \"false\"") : result,
                _ => throw CsiException.InvalidArgument($"unknown parameter '{key}'; Slab accepts repl, fs, io_priority (or priority_io), max_iops, max_bandwidth, nodes, zones, racks, label, block_size, secure"),
            };
        }

        foreach (var (key, value) in result.Labels)
            labels[key] = value;
        result = result with { Labels = labels };
        return mutable.Count == 0 ? result : result.With(ParseMutable(mutable));
    }

    /// <summary>Mutable parameters only (<see cref="MutableKeys"/>).</summary>
    public static VolumeParameters ParseMutable(IReadOnlyDictionary<string, string> mutable)
    {
        var result = new VolumeParameters();
        foreach (var (key, value) in mutable)
        {
            result = key switch
            {
                "repl" => result with { Repl = ParseRepl(value) },
                "io_priority" or "priority_io" => result with { IoPriority = ParsePriority(key, value) },
                "max_iops" or "max_bandwidth" => result with { Limits = ParseLimits(key, value, result.Limits) },
                _ => throw CsiException.InvalidArgument($"mutable parameter '{key}' is not supported; Slab can change {string.Join(", ", MutableKeys)}"),
            };
        }

        return result;
    }

    private VolumeParameters With(VolumeParameters overrides) => this with
    {
        Repl = overrides.Repl ?? Repl,
        IoPriority = overrides.IoPriority ?? IoPriority,
        Limits = Merge(Limits, overrides.Limits),
    };

    /// <summary>Sets the read and write fields of <c>max_iops</c> or <c>max_bandwidth</c> on (a copy of) <paramref name="limits"/>.</summary>
    private static IoLimits ParseLimits(string key, string value, IoLimits? limits)
    {
        var isIops = key == "max_iops";
        var maximum = isIops ? Common.IoLimitSyntax.MaxIops : Common.IoLimitSyntax.MaxMegabytesPerSecond;
        if (!Common.IoLimitSyntax.TryParsePair(value, maximum, out var read, out var write, out var error))
            throw CsiException.InvalidArgument($"parameter {key} '{value}': {error} ({(isIops ? Common.IoLimitSyntax.IopsHelp : Common.IoLimitSyntax.BandwidthHelp)})");
        var result = limits?.Clone() ?? new IoLimits();
        if (isIops)
        {
            result.MaxReadIops = (ulong)read;
            result.MaxWriteIops = (ulong)write;
        }
        else
        {
            result.MaxReadBytesPerSecond = (ulong)(read * Common.IoLimitSyntax.BytesPerMegabyte);
            result.MaxWriteBytesPerSecond = (ulong)(write * Common.IoLimitSyntax.BytesPerMegabyte);
        }

        return result;
    }

    private static IoLimits? Merge(IoLimits? current, IoLimits? overrides)
    {
        if (current is null || overrides is null)
            return overrides ?? current;
        var result = current.Clone();
        result.MergeFrom(overrides); // proto3 optional fields: only those set in overrides replace
        return result;
    }

    private static uint ParseRepl(string value) =>
        uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var repl) && repl is >= 1 and <= 3
            ? repl
            : throw CsiException.InvalidArgument($"parameter repl '{value}': give 1, 2 or 3 (replicas on distinct nodes)");

    private static string ParseFs(string value) => value.ToLowerInvariant() switch
    {
        "ext4" => "ext4",
        "xfs" => "xfs",
        "none" => "none",
        _ => throw CsiException.InvalidArgument($"parameter fs '{value}': give ext4, xfs or none"),
    };

    private static IoPriority ParsePriority(string key, string value) => value.ToLowerInvariant() switch
    {
        "high" => Api.V1.IoPriority.High,
        "medium" => Api.V1.IoPriority.Medium,
        "low" => Api.V1.IoPriority.Low,
        _ => throw CsiException.InvalidArgument($"parameter {key} '{value}': give high, medium or low"),
    };

    private static bool ParseBool(string key, string value) => value.ToLowerInvariant() switch
    {
        "true" => true,
        "false" => false,
        _ => throw CsiException.InvalidArgument($"parameter {key} '{value}': give true or false"),
    };

    /// <summary>Comma-separated, each entry trimmed and non-empty; duplicates dropped.</summary>
    private static string[] ParseList(string key, string value)
    {
        var entries = value.Split(',', StringSplitOptions.TrimEntries);
        if (entries.Any(e => e.Length == 0))
            throw CsiException.InvalidArgument($"parameter {key} '{value}': give a comma-separated list without empty entries");
        return [.. entries.Distinct(StringComparer.Ordinal)];
    }

    /// <summary><c>k1=v1,k2=v2</c>.</summary>
    private static Dictionary<string, string> ParseLabels(string value, Dictionary<string, string> metadata)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in value.Split(',', StringSplitOptions.TrimEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == pair.Length - 1)
                throw CsiException.InvalidArgument($"parameter label '{value}': give key=value pairs separated by commas, e.g. app=db,tier=1");
            var key = pair[..eq].Trim();
            if (metadata.ContainsKey(key) || s_metadataLabels.ContainsValue(key))
                throw CsiException.InvalidArgument($"parameter label '{value}': the label {key} is set by slab-csi from the claim; use another key");
            labels[key] = pair[(eq + 1)..].Trim();
        }

        return labels;
    }

    private static VolumeParameters CheckBlockSize(string value, VolumeParameters result)
    {
        // PX's block_size is in KiB ("4"); accept the bytes and unit spellings of 4 KiB too.
        var normalized = value.Trim().ToLowerInvariant();
        return normalized is "4" or "4k" or "4kb" or "4kib" or "4096" or "4096b"
            ? result
            : throw CsiException.InvalidArgument($"parameter block_size '{value}': Slab volumes have 4 KiB blocks; give 4 (KiB) or leave it out");
    }
}
