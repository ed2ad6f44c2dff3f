using System.Globalization;
using System.Text;
using Slab.Common;

namespace Slab.Cluster.Placement;

// The slow path: request validation and, when too few nodes qualify, a message saying which nodes
// qualified and why each of the others did not. Allocates freely; it runs only on refusals.
public sealed partial class PlacementEngine
{
    private const int NamesShown = 4;

    /// <summary>Why a node cannot take a new replica; the first that applies, in the order of the rules.</summary>
    private enum Reason
    {
        Qualifies,
        Placed,
        Avoided,
        NotSelected,
        OutsideTopology,
        MissingLabels,
        Offline,
        Maintenance,
        Decommissioning,
        NoPools,
        PoolsFull,
        NoRoom,
    }

    private static string? Validate(PlacementRequest request)
    {
        if (string.IsNullOrWhiteSpace(request.VolumeId))
        {
            return "a volume id is required";
        }

        if (request.ReplicaCount is < 1 or > PlacementRequest.MaxReplicaCount)
        {
            return Invariant($"repl must be 1, 2 or 3, not {request.ReplicaCount}");
        }

        if (request.SizeBytes <= 0)
        {
            return Invariant($"the volume size must be positive, not {request.SizeBytes} bytes");
        }

        var placed = request.PlacedReplicas;
        if (placed.Count >= request.ReplicaCount)
        {
            return Invariant(
                $"volume {request.VolumeId} already has {placed.Count} replica(s) ({string.Join(", ", placed)}); repl {request.ReplicaCount} needs no new one");
        }

        for (var i = 0; i < placed.Count; i++)
        {
            for (var j = i + 1; j < placed.Count; j++)
            {
                if (string.Equals(placed[i].NodeId, placed[j].NodeId, StringComparison.Ordinal))
                {
                    return $"the placed replicas of volume {request.VolumeId} share node {placed[i].NodeId}; replicas must be on distinct nodes";
                }
            }
        }

        return null;
    }

    private string UnknownSelectorMessage(List<string> unknown)
    {
        var quoted = unknown.ConvertAll(entry => $"'{entry}'");
        var known = new List<string>();
        foreach (var node in SortedNodes())
        {
            known.Add(DisplayName(node));
        }

        known.Sort(StringComparer.Ordinal);
        return Invariant(
            $"--nodes {(unknown.Count == 1 ? "entry" : "entries")} {string.Join(", ", quoted)} {(unknown.Count == 1 ? "matches" : "match")} no node id, name or address; the cluster's nodes are {Names(known, "none")}");
    }

    private PlacementResult Diagnose(PlacementRequest request, int[]? selected, ReadOnlySpan<int> excluded)
    {
        var nodes = _topology.Nodes;
        var groups = new Dictionary<Reason, List<string>>();
        var qualifying = new List<string>();
        var afterSelector = 0;
        var afterLabels = 0;
        var afterStatus = 0;
        foreach (var node in SortedNodes())
        {
            var reason = ReasonFor(node, request, selected, excluded, out var detail);
            if (reason == Reason.Qualifies)
            {
                qualifying.Add(DisplayName(node) + Where(node));
            }
            else
            {
                if (!groups.TryGetValue(reason, out var names))
                {
                    groups[reason] = names = [];
                }

                names.Add(detail is null ? DisplayName(node) : $"{DisplayName(node)} ({detail})");
            }

            afterSelector += reason is Reason.Qualifies or >= Reason.OutsideTopology ? 1 : 0;
            afterLabels += reason is Reason.Qualifies or >= Reason.Offline ? 1 : 0;
            afterStatus += reason is Reason.Qualifies or >= Reason.NoPools ? 1 : 0;
        }

        var needed = request.NewReplicaCount;
        var (error, hint) =
            selected is not null && afterSelector < needed
                ? (PlacementError.NodeSelectorUnmatched, "name more nodes in --nodes or lower repl")
            : (request.Zones.Count > 0 || request.Racks.Count > 0) && afterLabels < needed
                ? (PlacementError.LabelsUnmatched, "allow more zones or racks, or lower repl")
            : request.RequiredLabels.Count > 0 && afterLabels < needed
                ? (PlacementError.LabelsUnmatched, "label more nodes or lower repl")
            : afterStatus < needed
                ? (PlacementError.NotEnoughNodes, "bring nodes online or lower repl")
                : (PlacementError.NoCapacity, "free or add capacity on these nodes, or lower the size or repl");

        var message = new StringBuilder();
        if (request.PlacedReplicas.Count == 0)
        {
            message.Append(Invariant($"repl {request.ReplicaCount}"));
        }
        else
        {
            var placedOn = new List<string>();
            foreach (var replica in request.PlacedReplicas)
            {
                placedOn.Add(_byId.TryGetValue(replica.NodeId, out var node) ? DisplayName(node) : replica.NodeId);
            }

            message.Append(Invariant(
                $"{needed} more {(needed == 1 ? "replica" : "replicas")} for repl {request.ReplicaCount} (placed on {string.Join(", ", placedOn)})"));
        }

        message.Append(Invariant(
            $" needs {needed} online {(needed == 1 ? "node" : "nodes")} with room for {Sizes.Human(request.SizeBytes)}"));
        if (selected is not null)
        {
            message.Append(" among --nodes ").Append(string.Join(',', request.NodeSelector));
        }

        if (request.Zones.Count > 0)
        {
            message.Append(request.Zones.Count == 1 ? " in zone " : " in zones ").Append(string.Join(',', request.Zones));
        }

        if (request.Racks.Count > 0)
        {
            message.Append(request.Racks.Count == 1 ? " in rack " : " in racks ").Append(string.Join(',', request.Racks));
        }

        if (request.RequiredLabels.Count > 0)
        {
            var labels = new List<string>();
            foreach (var (key, value) in request.RequiredLabels)
            {
                labels.Add($"{key}={value}");
            }

            labels.Sort(StringComparer.Ordinal);
            message.Append(request.RequiredLabels.Count == 1 ? " with label " : " with labels ").Append(string.Join(',', labels));
        }

        message.Append(qualifying.Count switch
        {
            0 => "; none qualifies",
            1 => "; only 1 qualifies: ",
            _ => Invariant($"; only {qualifying.Count} qualify: "),
        });
        message.Append(Names(qualifying, string.Empty));

        var reasons = new List<string>();
        foreach (var reason in Enum.GetValues<Reason>())
        {
            // The subject already names the nodes holding replicas.
            if (reason != Reason.Placed && groups.TryGetValue(reason, out var names))
            {
                reasons.Add(Describe(reason, names));
            }
        }

        if (reasons.Count > 0)
        {
            message.Append("; ").Append(string.Join(", ", reasons));
        }

        message.Append(" (").Append(hint).Append(')');
        return PlacementResult.Fail(error, message.ToString());
    }

    private Reason ReasonFor(int node, PlacementRequest request, int[]? selected, ReadOnlySpan<int> excluded, out string? detail)
    {
        detail = null;
        if (excluded.Contains(node))
        {
            foreach (var replica in request.PlacedReplicas)
            {
                if (string.Equals(replica.NodeId, _topology.Nodes[node].Id, StringComparison.Ordinal))
                {
                    return Reason.Placed;
                }
            }

            return Reason.Avoided;
        }

        if (selected is not null && Array.IndexOf(selected, node) < 0)
        {
            return Reason.NotSelected;
        }

        if (!InTopology(node, request))
        {
            var where = Where(node);
            detail = where.Length == 0 ? "no zone or rack" : where.Trim()[1..^1];
            return Reason.OutsideTopology;
        }

        if (!HasLabels(node, request.RequiredLabels))
        {
            return Reason.MissingLabels;
        }

        switch (_topology.Nodes[node].Status)
        {
            case NodeStatus.Offline:
                return Reason.Offline;
            case NodeStatus.Maintenance:
                return Reason.Maintenance;
            case NodeStatus.Decommissioning:
                return Reason.Decommissioning;
        }

        if (BestPool(node, request.SizeBytes, request.IoPriority) != NoPool)
        {
            return Reason.Qualifies;
        }

        if (_poolStart[node] == _poolStart[node + 1])
        {
            return Reason.NoPools;
        }

        long? mostFree = null;
        for (var p = _poolStart[node]; p < _poolStart[node + 1]; p++)
        {
            if (!_pools[p].Full)
            {
                mostFree = Math.Max(mostFree ?? long.MinValue, _pools[p].Free);
            }
        }

        if (mostFree is not { } free)
        {
            return Reason.PoolsFull;
        }

        detail = Sizes.Human(Math.Max(free, 0)) + " provisionable";
        return Reason.NoRoom;
    }

    private static string Describe(Reason reason, List<string> names)
    {
        var one = names.Count == 1;
        var who = Names(names, string.Empty);
        return reason switch
        {
            Reason.Avoided => who + (one ? " is to be avoided" : " are to be avoided"),
            Reason.NotSelected => who + (one ? " is not in --nodes" : " are not in --nodes"),
            Reason.OutsideTopology => who + (one ? " is outside the allowed zones and racks" : " are outside the allowed zones and racks"),
            Reason.MissingLabels => who + (one ? " lacks the labels" : " lack the labels"),
            Reason.Offline => who + (one ? " is offline" : " are offline"),
            Reason.Maintenance => who + (one ? " is in maintenance" : " are in maintenance"),
            Reason.Decommissioning => who + (one ? " is being decommissioned" : " are being decommissioned"),
            Reason.NoPools => who + (one ? " has no pools" : " have no pools"),
            Reason.PoolsFull => who + (one ? "'s pools are full" : " have full pools"),
            Reason.NoRoom => who + (one ? " has too little provisionable space" : " have too little provisionable space"),
            _ => who,
        };
    }

    /// <summary>"a", "a and b", "a, b and c", or "7 nodes (a, b, c, d and 3 more)".</summary>
    private static string Names(List<string> names, string none)
    {
        if (names.Count == 0)
        {
            return none;
        }

        if (names.Count == 1)
        {
            return names[0];
        }

        if (names.Count <= NamesShown)
        {
            return string.Join(", ", names.GetRange(0, names.Count - 1)) + " and " + names[^1];
        }

        return Invariant($"{names.Count} nodes ({string.Join(", ", names.GetRange(0, NamesShown))} and {names.Count - NamesShown} more)");
    }

    private string DisplayName(int node)
    {
        var info = _topology.Nodes[node];
        return string.IsNullOrEmpty(info.Name) ? info.Id : info.Name;
    }

    /// <summary>" (zone z1, rack r2)", " (zone z1)", or "" when neither is known.</summary>
    private string Where(int node)
    {
        var info = _topology.Nodes[node];
        var zone = string.IsNullOrEmpty(info.Zone) ? null : "zone " + info.Zone;
        var rack = string.IsNullOrEmpty(info.Rack) ? null : "rack " + info.Rack;
        return (zone, rack) switch
        {
            (null, null) => string.Empty,
            (not null, null) => $" ({zone})",
            (null, not null) => $" ({rack})",
            _ => $" ({zone}, {rack})",
        };
    }

    private int[] SortedNodes()
    {
        var order = new int[_idRank.Length];
        for (var i = 0; i < order.Length; i++)
        {
            order[_idRank[i]] = i;
        }

        return order;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
