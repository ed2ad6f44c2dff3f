using Slab.Common;
using System.Buffers.Binary;
using System.Net;
using System.Text;
using Slab.Cluster.Membership;
using Slab.Replication;
using Xunit;

namespace Slab.Tests.Membership;

public sealed class GossipCodecTests
{
    private static readonly byte[] Cluster = Encoding.UTF8.GetBytes("c1");

    private static readonly NodeStats Stats = new() { TotalBytes = 10L << 30, UsedBytes = 1L << 30, ProvisionedBytes = 20L << 30, Load = 0.75, VolumeCount = 7, AttachedCount = 2 };

    private static byte[] Datagram(string cluster = "c1")
    {
        var buffer = new byte[1400];
        var writer = GossipCodec.StartWriting(buffer, cluster);
        Assert.True(writer.TryAdd("node-a", new IPEndPoint(IPAddress.Parse("127.0.0.1"), 9505), 1000, 42, Stats));
        Assert.True(writer.TryAdd("node-b", new IPEndPoint(IPAddress.Parse("fd00::7"), 9605), 2000, 3, default));
        return buffer[..writer.Finish()];
    }

    [Fact]
    public void Entries_round_trip()
    {
        var datagram = Datagram();
        Assert.Equal(GossipDecodeError.None, GossipCodec.TryOpen(datagram, Cluster, out var reader));
        Assert.Equal(2, reader.Remaining);
        Assert.True(reader.TryRead(out var a));
        Assert.Equal("node-a", Encoding.UTF8.GetString(a.NodeIdUtf8));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("127.0.0.1"), 9505), a.ToEndPoint());
        Assert.True(a.Matches(new IPEndPoint(IPAddress.Parse("127.0.0.1"), 9505)));
        Assert.False(a.Matches(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 9505)));
        Assert.Equal((1000, 42), (a.Generation, a.Heartbeat));
        Assert.Equal(Stats, a.Stats);
        Assert.True(reader.TryRead(out var b));
        Assert.Equal(new IPEndPoint(IPAddress.Parse("fd00::7"), 9605), b.ToEndPoint());
        Assert.False(reader.TryRead(out _));
        Assert.False(reader.Malformed);
    }

    [Fact]
    public void Every_truncation_and_every_flipped_byte_is_refused()
    {
        var datagram = Datagram();
        for (var length = 0; length < datagram.Length; length++)
        {
            Assert.NotEqual(GossipDecodeError.None, GossipCodec.TryOpen(datagram.AsSpan(0, length), Cluster, out _));
        }

        for (var i = 0; i < datagram.Length; i++)
        {
            var damaged = (byte[])datagram.Clone();
            damaged[i] ^= 0x10;
            Assert.NotEqual(GossipDecodeError.None, GossipCodec.TryOpen(damaged, Cluster, out _));
        }
    }

    [Fact]
    public void Foreign_clusters_versions_and_bad_framing_are_named()
    {
        Assert.Equal(GossipDecodeError.ForeignCluster, GossipCodec.TryOpen(Datagram("c2"), Cluster, out _));
        Assert.Equal(GossipDecodeError.BadMagic, GossipCodec.TryOpen(new byte[64], Cluster, out _));

        var newer = Datagram();
        BinaryPrimitives.WriteUInt16LittleEndian(newer.AsSpan(4), 2);
        Reseal(newer);
        Assert.Equal(GossipDecodeError.UnsupportedVersion, GossipCodec.TryOpen(newer, Cluster, out _));

        // A valid checksum over a lie: more entries announced than present.
        var overcount = Datagram();
        BinaryPrimitives.WriteUInt16LittleEndian(overcount.AsSpan(6), 3);
        Reseal(overcount);
        Assert.Equal(GossipDecodeError.None, GossipCodec.TryOpen(overcount, Cluster, out var reader));
        while (reader.TryRead(out _))
        {
        }

        Assert.True(reader.Malformed);

        // Bytes after the last entry.
        var trailing = Datagram();
        var longer = new byte[trailing.Length + 3];
        trailing.AsSpan(0, trailing.Length - 4).CopyTo(longer);
        Reseal(longer);
        Assert.Equal(GossipDecodeError.None, GossipCodec.TryOpen(longer, Cluster, out reader));
        while (reader.TryRead(out _))
        {
        }

        Assert.True(reader.Malformed);

        // An unknown address family.
        var family = Datagram();
        family[9 + Cluster.Length + 1 + "node-a".Length] = 5;
        Reseal(family);
        Assert.Equal(GossipDecodeError.None, GossipCodec.TryOpen(family, Cluster, out reader));
        Assert.False(reader.TryRead(out _));
        Assert.True(reader.Malformed);
    }

    [Fact]
    public void A_full_datagram_refuses_further_entries()
    {
        var buffer = new byte[GossipCodec.HeaderBytes + (2 * GossipCodec.MaxEntryBytes) + GossipCodec.TrailerBytes];
        var writer = GossipCodec.StartWriting(buffer, "c1");
        var added = 0;
        while (writer.TryAdd($"node-{added}", new IPEndPoint(IPAddress.Loopback, 1), 1, 1, Stats))
        {
            added++;
        }

        Assert.InRange(added, 2, 10);
        var length = writer.Finish();
        Assert.Equal(GossipDecodeError.None, GossipCodec.TryOpen(buffer.AsSpan(0, length), Cluster, out var reader));
        Assert.Equal(added, reader.Remaining);
    }

    private static void Reseal(byte[] datagram)
        => BinaryPrimitives.WriteUInt32LittleEndian(datagram.AsSpan(datagram.Length - 4), Crc32C.Compute(datagram.AsSpan(0, datagram.Length - 4)));
}
