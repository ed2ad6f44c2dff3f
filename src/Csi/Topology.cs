namespace Slab.Csi;

/// <summary>
/// The topology keys slab-csi reports (NodeGetInfo) and reads (CreateVolume, GetCapacity). A node's
/// zone and rack come from slabd (<c>--zone</c>/<c>--rack</c>); the node key's value is slabd's node name.
/// </summary>
internal static class Topology
{
    public const string ZoneKey = "topology.slab.dev/zone";

    public const string RackKey = "topology.slab.dev/rack";

    public const string NodeKey = "topology.slab.dev/node";

    /// <summary>INVALID_ARGUMENT for a key other than the three above (a requirement slab-csi could not honour).</summary>
    public static void RequireKnownKeys(IEnumerable<string> keys)
    {
        if (keys.FirstOrDefault(k => k is not (ZoneKey or RackKey or NodeKey)) is { } key)
            throw CsiException.InvalidArgument($"topology key '{key}' is not one slab-csi reports; use {ZoneKey}, {RackKey} or {NodeKey}");
    }

    /// <summary>A node's segment: its node name and, when known, its zone and rack.</summary>
    public static Dictionary<string, string> SegmentOf(string nodeName, string zone, string rack)
    {
        var segment = new Dictionary<string, string>(StringComparer.Ordinal) { [NodeKey] = nodeName };
        if (zone.Length > 0)
            segment[ZoneKey] = zone;
        if (rack.Length > 0)
            segment[RackKey] = rack;
        return segment;
    }

    /// <summary>
    /// Whether a node with this segment lies in <paramref name="wanted"/>: every key the wanted
    /// segment names must have that value on the node (a key the node lacks does not match).
    /// </summary>
    public static bool Matches(IReadOnlyDictionary<string, string> node, IEnumerable<KeyValuePair<string, string>> wanted)
    {
        foreach (var (key, value) in wanted)
        {
            if (!node.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
                return false;
        }

        return true;
    }
}
