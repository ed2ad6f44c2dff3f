using System.Globalization;
using Slab.Common;
using V1 = Slab.Api.V1;

namespace Slab.Api.Docker;

/// <summary>
/// What a Docker volume request asks for, resolved: the Slab volume's name and the volume to create
/// when it does not exist. <see cref="Parent"/> set: a clone of that volume or <c>VOL@SNAP</c>
/// (size, repl and fs then come from the parent).
/// </summary>
public sealed record DockerVolumeSpec(string Name, V1.VolumeSpec Spec, string? Parent, IReadOnlyDictionary<string, string> Labels);

/// <summary>
/// Docker volume options with PX's names (<c>--opt k=v</c>) and PX's inline spec in the volume name
/// (<c>name=pg,size=5G,repl=2</c>). The inline spec is parsed only when the name has a
/// <c>name=</c> item; otherwise the whole name is the Slab volume's name. In the inline spec, lists
/// (<c>nodes</c>, <c>label</c>) separate their items with ';' (',' separates the spec's items); in
/// <c>--opt</c> either separator works. Every key and value is checked: an unknown key, a bad value
/// or an option Slab cannot honour is refused (<see cref="SlabException"/> InvalidArgument with a
/// message for people), never ignored or defaulted.
/// </summary>
public static class DockerVolumeOptions
{
    /// <summary>Size when none is given: 1 GiB, as PX.</summary>
    public const ulong DefaultSizeBytes = SizeSyntax.GiB;

    /// <summary>The only volume block size the engine has (<c>Store.ReplicaFile.BlockSize</c>).</summary>
    public const int SupportedBlockSize = 4096;

    public const string SupportedKeys = "size, repl, fs, io_priority, nodes, zones, racks, label, block_size, parent, max_iops, max_bandwidth";

    private static readonly Dictionary<string, string> Aliases = new(StringComparer.Ordinal)
    {
        ["bs"] = "block_size",
        ["priority_io"] = "io_priority",
        ["labels"] = "label",
    };

    // PX options that exist there but not (yet) here: refused by name rather than as unknown.
    private static readonly HashSet<string> NotSupported = new(StringComparer.Ordinal)
    {
        "shared", "sharedv4", "secure", "passphrase", "secret_key", "io_profile", "aggregation_level",
        "sticky", "scale", "group", "fg", "journal", "nodiscard", "cos", "snap_interval", "encrypted",
    };

    /// <summary>
    /// The Slab volume name a Docker volume name stands for: the <c>name=</c> of an inline spec,
    /// else the name itself. Throws when it is not a valid Slab volume name.
    /// </summary>
    public static string ResolveName(string dockerName) => Parse(dockerName, null).Name;

    /// <summary>Parses <paramref name="dockerName"/> (maybe an inline spec) together with <paramref name="opts"/>.</summary>
    /// <exception cref="SlabException">InvalidArgument: an unknown key, a bad value, a key given twice with different values.</exception>
    public static DockerVolumeSpec Parse(string dockerName, IReadOnlyDictionary<string, string>? opts)
    {
        ArgumentNullException.ThrowIfNull(dockerName);
        var values = new Dictionary<string, (string Value, string From)>(StringComparer.Ordinal);
        string name;
        var inline = IsInlineSpec(dockerName);
        if (inline)
        {
            string? inlineName = null;
            foreach (var item in dockerName.Split(','))
            {
                var eq = item.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0)
                {
                    throw Invalid($"inline spec '{dockerName}': item '{item}' is not key=value (items are separated by ','; list values by ';')");
                }

                var key = Canonical(item[..eq].Trim());
                var value = item[(eq + 1)..].Trim();
                if (key == "name")
                {
                    inlineName = inlineName is null ? value : throw Invalid($"inline spec '{dockerName}' gives name= twice");
                    continue;
                }

                Add(values, key, value, "the inline spec");
            }

            name = inlineName!;
        }
        else
        {
            name = dockerName;
        }

        if (!VolumeNames.IsValid(name))
        {
            throw Invalid(inline || !dockerName.Contains('=', StringComparison.Ordinal)
                ? VolumeNames.Invalid(name, "volume")
                : VolumeNames.Invalid(name, "volume") + " (an inline spec needs a name= item, e.g. name=pg,size=5G)");
        }

        foreach (var (key, value) in opts ?? new Dictionary<string, string>())
        {
            if (Canonical(key.Trim()) == "name")
            {
                throw Invalid("--opt name is not an option: the volume's name is the name given to docker");
            }

            Add(values, Canonical(key.Trim()), value.Trim(), "--opt");
        }

        return Build(name, values.ToDictionary(kv => kv.Key, kv => kv.Value.Value, StringComparer.Ordinal));
    }

    /// <summary>True when <paramref name="dockerName"/> is a PX inline spec: it has a <c>name=</c> item.</summary>
    public static bool IsInlineSpec(string dockerName)
        => dockerName.Split(',').Any(item => item.TrimStart().StartsWith("name=", StringComparison.OrdinalIgnoreCase));

    private static DockerVolumeSpec Build(string name, Dictionary<string, string> values)
    {
        var spec = new V1.VolumeSpec { SizeBytes = DefaultSizeBytes };
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        string? parent = null;
        foreach (var (key, value) in values.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (value.Length == 0)
            {
                throw Invalid($"option {key} has an empty value");
            }

            switch (key)
            {
                case "size":
                    spec.SizeBytes = SizeSyntax.TryParse(value, out var bytes, out var error)
                        ? bytes
                        : throw Invalid($"size={value}: {error}");
                    break;
                case "repl":
                    spec.Repl = uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var repl) && repl is >= 1 and <= 3
                        ? repl
                        : throw Invalid($"repl={value}: the number of replicas is 1, 2 or 3");
                    break;
                case "fs":
                    spec.Fs = value.ToLowerInvariant() switch
                    {
                        "ext4" => "ext4",
                        "xfs" => "xfs",
                        "none" => throw Invalid("fs=none: Docker mounts its volumes, so they need a filesystem (ext4 or xfs)"),
                        _ => throw Invalid($"fs={value}: use ext4 or xfs"),
                    };
                    break;
                case "io_priority":
                    spec.IoPriority = value.ToLowerInvariant() switch
                    {
                        "high" => V1.IoPriority.High,
                        "medium" => V1.IoPriority.Medium,
                        "low" => V1.IoPriority.Low,
                        _ => throw Invalid($"io_priority={value}: use high, medium or low"),
                    };
                    break;
                case "nodes":
                    var nodes = SplitList(value);
                    spec.Nodes.Add(nodes.Count > 0 ? nodes : throw Invalid("nodes= names no node"));
                    break;
                case "label":
                    foreach (var pair in SplitList(value))
                    {
                        var eq = pair.IndexOf('=', StringComparison.Ordinal);
                        if (eq <= 0 || eq == pair.Length - 1)
                        {
                            throw Invalid($"label '{pair}' is not key=value (several: label=k1=v1;k2=v2)");
                        }

                        var (labelKey, labelValue) = (pair[..eq].Trim(), pair[(eq + 1)..].Trim());
                        if (VolumeNames.LabelProblem(labelKey, labelValue) is { } problem)
                        {
                            throw Invalid(problem);
                        }

                        if (!labels.TryAdd(labelKey, labelValue) && labels[labelKey] != labelValue)
                        {
                            throw Invalid($"label {labelKey} is given twice with different values");
                        }
                    }

                    break;
                case "block_size":
                    if (!IsSupportedBlockSize(value))
                    {
                        throw Invalid($"block_size={value}: Slab volumes have one block size, 4 KiB (block_size=4096 or 4K)");
                    }

                    break;
                case "parent":
                    var (parentVolume, parentSnapshot) = VolumeNames.Split(value);
                    if (!VolumeNames.IsValid(parentVolume) || (parentSnapshot is not null && !VolumeNames.IsValid(parentSnapshot)))
                    {
                        throw Invalid($"parent={value}: name a volume or VOL@SNAP");
                    }

                    parent = value;
                    break;
                case "zones" or "racks":
                    var domains = SplitList(value);
                    (key == "zones" ? spec.Zones : spec.Racks).Add(domains.Count > 0 ? domains : throw Invalid($"{key}= names no {key[..^1]}"));
                    break;
                case "max_iops" or "max_bandwidth":
                    // R,W as in pxctl; in an inline spec (where ',' separates items) R;W.
                    var isIops = key == "max_iops";
                    if (!IoLimitSyntax.TryParsePair(value.Replace(';', ','), isIops ? IoLimitSyntax.MaxIops : IoLimitSyntax.MaxMegabytesPerSecond, out var read, out var write, out var limitError))
                    {
                        throw Invalid($"{key}={value}: {limitError} (read,write; in a volume name read;write)");
                    }

                    spec.Limits ??= new V1.IoLimits();
                    if (isIops)
                    {
                        (spec.Limits.MaxReadIops, spec.Limits.MaxWriteIops) = ((ulong)read, (ulong)write);
                    }
                    else
                    {
                        (spec.Limits.MaxReadBytesPerSecond, spec.Limits.MaxWriteBytesPerSecond) = ((ulong)(read * IoLimitSyntax.BytesPerMegabyte), (ulong)(write * IoLimitSyntax.BytesPerMegabyte));
                    }

                    break;
                case "snap_schedule":
                    throw Invalid("snap_schedule: snapshot schedules do not exist in Slab yet; take snapshots with slabctl volume snapshot create");
                default:
                    throw Invalid(NotSupported.Contains(key)
                        ? $"option {key} is a PX option Slab does not support yet (supported: {SupportedKeys})"
                        : $"unknown option {key} (supported: {SupportedKeys})");
            }
        }

        spec.Labels.Add(labels);
        if (parent is not null)
        {
            var fixedByParent = values.Keys.Where(k => k is "size" or "repl" or "fs" or "io_priority" or "nodes" or "zones" or "racks" or "max_iops" or "max_bandwidth").ToList();
            if (fixedByParent.Count > 0)
            {
                throw Invalid($"parent={parent}: a clone takes size, repl, fs, io priority, placement and QoS limits from its parent; drop {string.Join(", ", fixedByParent)} (change them after with slabctl volume update / ha-update)");
            }
        }

        return new DockerVolumeSpec(name, spec, parent, labels);
    }

    private static bool IsSupportedBlockSize(string value)
    {
        var v = value.ToLowerInvariant();
        // Bytes (PX's inline bs=4096), KiB with a unit, or PX's legacy bare Kbytes (block_size=4).
        return v is "4096" or "4" or "4k" or "4kb" or "4ki" or "4kib";
    }

    private static List<string> SplitList(string value)
        => [.. value.Split([';', ','], StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)];

    private static void Add(Dictionary<string, (string Value, string From)> values, string key, string value, string from)
    {
        if (key.Length == 0)
        {
            throw Invalid($"{from} has an option with an empty key");
        }

        if (values.TryGetValue(key, out var existing))
        {
            if (existing.Value != value)
            {
                throw Invalid($"option {key} is given twice with different values ('{existing.Value}' in {existing.From}, '{value}' in {from})");
            }

            if (existing.From == from)
            {
                throw Invalid($"option {key} is given twice in {from}");
            }
        }

        values[key] = (value, from);
    }

    private static string Canonical(string key)
    {
        var lower = key.ToLowerInvariant();
        return Aliases.TryGetValue(lower, out var canonical) ? canonical : lower;
    }

    private static SlabException Invalid(string message) => new(SlabErrorCode.InvalidArgument, message);
}
