using Csi.V1;
using Grpc.Core;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Controller;

internal sealed partial class ControllerService
{
    /// <summary>
    /// What a new volume with these parameters could still get within the segment: over the online
    /// nodes in it (and in the parameters' nodes/zones/racks), each pool's provisionable bytes (size ×
    /// overcommit − provisioned), divided by repl because every replica costs a volume's size.
    /// maximum_volume_size is the most one volume can get: the repl-th roomiest node's best pool.
    /// </summary>
    public override async Task<GetCapacityResponse> GetCapacity(GetCapacityRequest request, ServerCallContext context)
    {
        var parameters = VolumeParameters.Parse(request.Parameters, new Dictionary<string, string>());
        if (request.VolumeCapabilities.Any(c => VolumeCapabilities.Unsupported(c) is not null))
            return new GetCapacityResponse { AvailableCapacity = 0 };
        if (request.AccessibleTopology is { } segment)
            Topology.RequireKnownKeys(segment.Segments.Keys);

        var nodes = await ListNodesAsync(context).ConfigureAwait(false);
        var repl = (int)(parameters.Repl ?? 1);
        long total = 0;
        var bestPools = new List<long>();
        foreach (var node in nodes)
        {
            if (node.Status != "online"
                || (request.AccessibleTopology is { } wanted && !Topology.Matches(Topology.SegmentOf(node.Name, node.Zone, node.Rack), wanted.Segments))
                || (parameters.Zones.Count > 0 && !parameters.Zones.Contains(node.Zone, StringComparer.Ordinal))
                || (parameters.Racks.Count > 0 && !parameters.Racks.Contains(node.Rack, StringComparer.Ordinal))
                || (parameters.Nodes.Count > 0 && !parameters.Nodes.Any(n => string.Equals(n, node.Name, StringComparison.OrdinalIgnoreCase) || string.Equals(n, node.Id, StringComparison.OrdinalIgnoreCase))))
            {
                continue;
            }

            long best = 0;
            foreach (var pool in node.Pools.Where(p => parameters.IoPriority is not { } priority || p.IoPriority == priority))
            {
                var provisionable = Math.Max(0, (long)(pool.TotalBytes * Math.Max(pool.OvercommitRatio, 1.0)) - (long)pool.ProvisionedBytes);
                total += provisionable;
                best = Math.Max(best, provisionable);
            }

            bestPools.Add(best);
        }

        bestPools.Sort((a, b) => b.CompareTo(a));
        var maximum = bestPools.Count >= repl ? bestPools[repl - 1] : 0;
        return new GetCapacityResponse
        {
            AvailableCapacity = bestPools.Count >= repl ? RoundDown(total / repl) : 0,
            MaximumVolumeSize = RoundDown(maximum),
            MinimumVolumeSize = CapacityRanges.Granularity,
        };

        static long RoundDown(long bytes) => bytes / CapacityRanges.Granularity * CapacityRanges.Granularity;
    }
}
