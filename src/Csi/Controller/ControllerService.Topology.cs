using Csi.V1;
using Grpc.Core;
using Slab.Csi.Slabd;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Controller;

/// <summary>Where a new volume's replicas may go: slabd's --nodes, --zones, --racks (each empty = any).</summary>
/// <param name="PreferredNode">The slabd node to give the first replica (the preferred topology's first node, where the CO will run the pod); null = none.</param>
internal sealed record PlacementConstraints(IReadOnlyList<string> Nodes, IReadOnlyList<string> Zones, IReadOnlyList<string> Racks, string? PreferredNode = null)
{
    public bool Constrained => Nodes.Count > 0 || Zones.Count > 0 || Racks.Count > 0;

    public override string ToString()
    {
        var parts = new List<string>(3);
        if (Nodes.Count > 0)
            parts.Add("nodes " + string.Join(",", Nodes));
        if (Zones.Count > 0)
            parts.Add("zones " + string.Join(",", Zones));
        if (Racks.Count > 0)
            parts.Add("racks " + string.Join(",", Racks));
        return parts.Count == 0 ? "anywhere" : string.Join("; ", parts);
    }
}

/// <summary>A clone's source: slabd's reference for it ("VOLID" or "VOLID@SNAPID"), its volume and its size.</summary>
internal sealed record ContentSource(string Reference, V1.Volume Volume, long SizeBytes, VolumeContentSource Csi);

internal sealed partial class ControllerService
{
    private async Task<IReadOnlyList<V1.ClusterNode>> ListNodesAsync(ServerCallContext context) =>
        (await slabd.Cluster.ListNodesAsync(new V1.ListNodesRequest(), SlabdApi.Options(context)).ConfigureAwait(false)).Nodes;

    /// <summary>
    /// The stricter of the StorageClass's nodes/zones/racks and the CO's requisite topology. A
    /// requisite that admits every node constrains nothing; one that admits whole zones becomes
    /// zones; else the nodes it admits. The preferred topology's first segment, when it names a node
    /// (WaitForFirstConsumer: the pod's node), gets the first replica, so the pod's reads stay local.
    /// </summary>
    private static PlacementConstraints Constrain(VolumeParameters parameters, TopologyRequirement? requirement, IReadOnlyList<V1.ClusterNode> nodes)
    {
        IReadOnlyList<string> zones = parameters.Zones;
        IReadOnlyList<string> nodeNames = parameters.Nodes;
        if (requirement is { Requisite.Count: > 0 })
        {
            Topology.RequireKnownKeys(requirement.Requisite.SelectMany(t => t.Segments.Keys));

            var segments = nodes.ToDictionary(n => n.Id, n => Topology.SegmentOf(n.Name, n.Zone, n.Rack), StringComparer.Ordinal);
            var admitted = nodes.Where(n => requirement.Requisite.Any(t => Topology.Matches(segments[n.Id], t.Segments))).ToList();
            if (admitted.Count == 0)
                throw CsiException.ResourceExhausted("no Slab node lies in the requisite topology; check the nodes' --zone/--rack and the StorageClass's allowedTopologies");
            if (admitted.Count < nodes.Count)
            {
                var admittedZones = admitted.Select(n => n.Zone).Distinct(StringComparer.Ordinal).ToList();
                var wholeZones = admitted.All(n => n.Zone.Length > 0)
                    && nodes.Where(n => admittedZones.Contains(n.Zone, StringComparer.Ordinal)).All(n => admitted.Contains(n));
                if (wholeZones)
                {
                    zones = zones.Count == 0 ? admittedZones : [.. zones.Intersect(admittedZones, StringComparer.Ordinal)];
                    if (zones.Count == 0)
                        throw CsiException.ResourceExhausted($"parameter zones {string.Join(",", parameters.Zones)} and the requisite topology's zones {string.Join(",", admittedZones)} have none in common");
                }
                else
                {
                    var admittedNames = admitted.Select(n => n.Name).ToList();
                    nodeNames = nodeNames.Count == 0
                        ? admittedNames
                        : [.. nodeNames.Where(entry => admitted.Any(n => string.Equals(n.Name, entry, StringComparison.OrdinalIgnoreCase) || string.Equals(n.Id, entry, StringComparison.OrdinalIgnoreCase)))];
                    if (nodeNames.Count == 0)
                        throw CsiException.ResourceExhausted($"parameter nodes {string.Join(",", parameters.Nodes)} and the requisite topology's nodes {string.Join(",", admittedNames)} have none in common");
                }
            }
        }

        var preferred = requirement?.Preferred.FirstOrDefault()?.Segments.GetValueOrDefault(Topology.NodeKey);
        return new PlacementConstraints(nodeNames, zones, parameters.Racks, string.IsNullOrEmpty(preferred) ? null : preferred);
    }

    /// <summary>
    /// The CSI view of a volume. Its accessible topology names its replicas' zones (when every replica's
    /// node has one), and their racks and nodes only when the volume was confined to racks or nodes:
    /// any node can attach a Slab volume, so the CO is only kept to where the volume was meant to live.
    /// No segments = accessible from every node.
    /// </summary>
    internal static global::Csi.V1.Volume ToCsi(V1.Volume volume, IReadOnlyList<V1.ClusterNode> nodes)
    {
        var result = new global::Csi.V1.Volume
        {
            VolumeId = volume.Id,
            CapacityBytes = (long)(volume.Spec?.SizeBytes ?? 0),
        };
        result.VolumeContext.Add("name", volume.Name);
        result.VolumeContext.Add("fs", FsOf(volume));
        result.VolumeContext.Add("repl", ReplOf(volume).ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (volume.Source.Length > 0)
        {
            result.ContentSource = CsiNames.TrySplitSnapshotId(volume.Source, out _, out _)
                ? new VolumeContentSource { Snapshot = new VolumeContentSource.Types.SnapshotSource { SnapshotId = volume.Source } }
                : new VolumeContentSource { Volume = new VolumeContentSource.Types.VolumeSource { VolumeId = volume.Source } };
        }

        var replicaNodes = volume.Replicas
            .Select(r => nodes.FirstOrDefault(n => n.Id == r.NodeId))
            .ToList();
        if (replicaNodes.Count == 0 || replicaNodes.Any(n => n is null))
            return result;
        var byZone = replicaNodes.All(n => n!.Zone.Length > 0);
        var byRack = volume.Spec is { Racks.Count: > 0 } && replicaNodes.All(n => n!.Rack.Length > 0);
        var byNode = volume.Spec is { Nodes.Count: > 0 };
        if (!byZone && !byRack && !byNode)
            return result;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var node in replicaNodes)
        {
            var topology = new global::Csi.V1.Topology();
            if (byZone)
                topology.Segments[Topology.ZoneKey] = node!.Zone;
            if (byRack)
                topology.Segments[Topology.RackKey] = node!.Rack;
            if (byNode)
                topology.Segments[Topology.NodeKey] = node!.Name;
            if (seen.Add(string.Join('\n', topology.Segments.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => s.Key + "=" + s.Value))))
                result.AccessibleTopology.Add(topology);
        }

        return result;
    }

    /// <summary>The content source, checked: it must exist (NOT_FOUND) and be a snapshot or volume slab-csi names.</summary>
    private async Task<ContentSource?> ResolveSourceAsync(VolumeContentSource? source, ServerCallContext context)
    {
        switch (source?.TypeCase)
        {
            case null or VolumeContentSource.TypeOneofCase.None:
                return null;
            case VolumeContentSource.TypeOneofCase.Snapshot:
            {
                var id = source.Snapshot.SnapshotId;
                if (id.Length == 0)
                    throw CsiException.Missing("volume_content_source.snapshot.snapshot_id");
                var snapshot = await FindSnapshotAsync(id, context).ConfigureAwait(false)
                    ?? throw CsiException.NotFound($"snapshot {id} does not exist");
                return new ContentSource(id, snapshot.Volume, (long)snapshot.Snapshot.SizeBytes, source);
            }

            case VolumeContentSource.TypeOneofCase.Volume:
            {
                var id = source.Volume.VolumeId;
                if (id.Length == 0)
                    throw CsiException.Missing("volume_content_source.volume.volume_id");
                var volume = await slabd.FindVolumeByIdAsync(id, context).ConfigureAwait(false)
                    ?? throw CsiException.NotFound($"source volume {id} does not exist");
                return new ContentSource(id, volume, (long)volume.Spec.SizeBytes, source);
            }

            default:
                throw CsiException.InvalidArgument("volume_content_source must name a snapshot or a volume");
        }
    }
}
