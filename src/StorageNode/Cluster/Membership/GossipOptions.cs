using System.Collections.Immutable;
using System.Net;

namespace Slab.Cluster.Membership;

/// <summary>Settings of one node's gossip.</summary>
public sealed record GossipOptions
{
    /// <summary>Cluster id; datagrams of other clusters are dropped.</summary>
    public required string ClusterId { get; init; }

    /// <summary>This node's id.</summary>
    public required string NodeId { get; init; }

    /// <summary>Local UDP endpoint to bind (port 0: any free port, see <see cref="GossipMembership.LocalEndPoint"/>).</summary>
    public required IPEndPoint BindEndPoint { get; init; }

    /// <summary>The endpoint other nodes reach this one at; defaults to the bound endpoint, which must then be a concrete address.</summary>
    public IPEndPoint? AdvertiseEndPoint { get; init; }

    /// <summary>Gossip endpoints to contact until they answer (the KVDB voters); this node's own endpoint is ignored.</summary>
    public ImmutableArray<IPEndPoint> Seeds { get; init; } = [];

    /// <summary>Time between heartbeats (each one a datagram to <see cref="Fanout"/> live peers plus one probe).</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Live peers sent to per heartbeat.</summary>
    public int Fanout { get; init; } = 3;

    /// <summary>Silence after which a node is offline. Must exceed a few <see cref="Interval"/>s.</summary>
    public TimeSpan OfflineAfter { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Silence after which a node is dropped from the view (it stays registered in the cluster state).</summary>
    public TimeSpan ForgetAfter { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Upper bound of an outgoing datagram in bytes (keep under the path MTU to avoid IP fragmentation).</summary>
    public int MaxDatagramBytes { get; init; } = 1400;

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrEmpty(ClusterId);
        ArgumentException.ThrowIfNullOrEmpty(NodeId);
        if (System.Text.Encoding.UTF8.GetByteCount(ClusterId) > GossipCodec.MaxIdBytes || System.Text.Encoding.UTF8.GetByteCount(NodeId) > GossipCodec.MaxIdBytes)
        {
            throw new ArgumentException($"cluster and node ids must be at most {GossipCodec.MaxIdBytes} bytes");
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Interval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(Fanout, 1);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(OfflineAfter, Interval);
        ArgumentOutOfRangeException.ThrowIfLessThan(ForgetAfter, OfflineAfter);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxDatagramBytes, GossipCodec.HeaderBytes + (2 * GossipCodec.MaxEntryBytes) + GossipCodec.TrailerBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxDatagramBytes, GossipCodec.MaxDatagramBytes);
        var advertise = AdvertiseEndPoint ?? BindEndPoint;
        if (advertise.Address.Equals(IPAddress.Any) || advertise.Address.Equals(IPAddress.IPv6Any))
        {
            throw new ArgumentException("gossip binds a wildcard address; set AdvertiseEndPoint to the address peers reach this node at");
        }
    }
}
