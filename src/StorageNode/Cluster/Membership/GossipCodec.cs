using Slab.Common;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Slab.Cluster.Membership;

/// <summary>Why a gossip datagram was dropped.</summary>
public enum GossipDecodeError
{
    /// <summary>Decoded.</summary>
    None,

    /// <summary>Shorter than its header, its entries or its checksum say.</summary>
    Truncated,

    /// <summary>Not a Slab gossip datagram.</summary>
    BadMagic,

    /// <summary>A gossip version this node does not speak.</summary>
    UnsupportedVersion,

    /// <summary>The CRC-32C does not match (corrupted in flight).</summary>
    BadChecksum,

    /// <summary>From a node of another cluster.</summary>
    ForeignCluster,

    /// <summary>A field out of range (empty or oversized id, unknown address family, negative numbers, trailing bytes).</summary>
    Malformed,
}

/// <summary>
/// The gossip datagram, version 1. All integers little-endian.
/// <code>
/// header : u32 magic 0x53474C53 ("SLGS") | u16 version = 1 | u16 entry count | u8 n | cluster id (n bytes UTF-8, 1..64)
/// entry  : u8 n | node id (n bytes UTF-8, 1..64) | u8 family (4|6) | address (4|16 bytes) | u16 port
///          | i64 generation | i64 heartbeat | i64 total | i64 used | i64 provisioned | f64 load | u32 volumes | u32 attached
/// trailer: u32 CRC-32C of every byte before it
/// </code>
/// The first entry is the sender. A node's (generation, heartbeat) pair only grows: the generation is
/// its start time in Unix milliseconds, the heartbeat counts its heartbeats since then.
/// </summary>
/// <remarks>Thread-safe (stateless). Decoding allocates nothing.</remarks>
public static class GossipCodec
{
    /// <summary>"SLGS".</summary>
    public const uint Magic = 0x53474C53;

    /// <summary>The version this node writes and reads.</summary>
    public const ushort Version = 1;

    /// <summary>Longest cluster or node id, in UTF-8 bytes.</summary>
    public const int MaxIdBytes = 64;

    /// <summary>Largest header.</summary>
    public const int HeaderBytes = 4 + 2 + 2 + 1 + MaxIdBytes;

    /// <summary>Largest entry.</summary>
    public const int MaxEntryBytes = 1 + MaxIdBytes + 1 + 16 + 2 + (8 * 6) + 4 + 4;

    /// <summary>The checksum.</summary>
    public const int TrailerBytes = 4;

    /// <summary>Largest UDP payload over IPv4.</summary>
    public const int MaxDatagramBytes = 65507;

    private const int FixedEntryBytes = 2 + (8 * 6) + 4 + 4;

    /// <summary>Starts a datagram in <paramref name="buffer"/>.</summary>
    public static GossipWriter StartWriting(Span<byte> buffer, string clusterId) => new(buffer, clusterId);

    /// <summary>Checks a datagram's framing, checksum and cluster, and positions a reader on its entries.</summary>
    public static GossipDecodeError TryOpen(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> clusterIdUtf8, out GossipReader reader)
    {
        reader = default;
        if (datagram.Length < 9 + TrailerBytes)
        {
            return GossipDecodeError.Truncated;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(datagram) != Magic)
        {
            return GossipDecodeError.BadMagic;
        }

        if (BinaryPrimitives.ReadUInt16LittleEndian(datagram[4..]) != Version)
        {
            return GossipDecodeError.UnsupportedVersion;
        }

        var body = datagram[..^TrailerBytes];
        if (Crc32C.Compute(body) != BinaryPrimitives.ReadUInt32LittleEndian(datagram[^TrailerBytes..]))
        {
            return GossipDecodeError.BadChecksum;
        }

        int count = BinaryPrimitives.ReadUInt16LittleEndian(body[6..]);
        int idLength = body[8];
        if (idLength is 0 or > MaxIdBytes || count == 0)
        {
            return GossipDecodeError.Malformed;
        }

        if (body.Length < 9 + idLength)
        {
            return GossipDecodeError.Truncated;
        }

        if (!body.Slice(9, idLength).SequenceEqual(clusterIdUtf8))
        {
            return GossipDecodeError.ForeignCluster;
        }

        reader = new GossipReader(body[(9 + idLength)..], count);
        return GossipDecodeError.None;
    }

    internal static bool TryReadEntry(scoped ref ReadOnlySpan<byte> rest, out GossipEntryRef entry)
    {
        entry = default;
        if (rest.Length < 1)
        {
            return false;
        }

        int idLength = rest[0];
        if (idLength is 0 or > MaxIdBytes || rest.Length < 1 + idLength + 1)
        {
            return false;
        }

        var nodeId = rest.Slice(1, idLength);
        var family = rest[1 + idLength];
        var addressLength = family switch { 4 => 4, 6 => 16, _ => -1 };
        var offset = 2 + idLength;
        if (addressLength < 0 || rest.Length < offset + addressLength + FixedEntryBytes)
        {
            return false;
        }

        var address = rest.Slice(offset, addressLength);
        var f = rest.Slice(offset + addressLength, FixedEntryBytes);
        var port = BinaryPrimitives.ReadUInt16LittleEndian(f);
        var generation = BinaryPrimitives.ReadInt64LittleEndian(f[2..]);
        var heartbeat = BinaryPrimitives.ReadInt64LittleEndian(f[10..]);
        var stats = new NodeStats
        {
            TotalBytes = BinaryPrimitives.ReadInt64LittleEndian(f[18..]),
            UsedBytes = BinaryPrimitives.ReadInt64LittleEndian(f[26..]),
            ProvisionedBytes = BinaryPrimitives.ReadInt64LittleEndian(f[34..]),
            Load = BinaryPrimitives.ReadDoubleLittleEndian(f[42..]),
            VolumeCount = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(f[50..]), int.MaxValue),
            AttachedCount = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(f[54..]), int.MaxValue),
        };
        if (port == 0 || generation < 0 || heartbeat < 0 || stats.TotalBytes < 0 || stats.UsedBytes < 0 || stats.ProvisionedBytes < 0
            || !double.IsFinite(stats.Load) || stats.Load < 0)
        {
            return false;
        }

        entry = new GossipEntryRef(nodeId, address, port, generation, heartbeat, stats);
        rest = rest[(offset + addressLength + FixedEntryBytes)..];
        return true;
    }

    /// <summary>Encoded size of an entry for this node id and address.</summary>
    public static int EntrySize(string nodeId, IPEndPoint endPoint)
        => 1 + Encoding.UTF8.GetByteCount(nodeId) + 1 + (endPoint.AddressFamily == AddressFamily.InterNetworkV6 ? 16 : 4) + FixedEntryBytes;
}

/// <summary>One decoded entry, viewing the datagram's bytes (valid until the buffer is reused).</summary>
public readonly ref struct GossipEntryRef(ReadOnlySpan<byte> nodeIdUtf8, ReadOnlySpan<byte> address, ushort port, long generation, long heartbeat, NodeStats stats)
{
    /// <summary>The node id, UTF-8.</summary>
    public ReadOnlySpan<byte> NodeIdUtf8 { get; } = nodeIdUtf8;

    /// <summary>The gossip address, 4 or 16 bytes in network order.</summary>
    public ReadOnlySpan<byte> Address { get; } = address;

    /// <summary>The gossip port.</summary>
    public ushort Port { get; } = port;

    /// <summary>The node's start time, Unix milliseconds.</summary>
    public long Generation { get; } = generation;

    /// <summary>Heartbeats since that start.</summary>
    public long Heartbeat { get; } = heartbeat;

    /// <summary>Published stats.</summary>
    public NodeStats Stats { get; } = stats;

    /// <summary>Allocates the endpoint (done only when a node is new or moved).</summary>
    public IPEndPoint ToEndPoint() => new(new IPAddress(Address), Port);

    /// <summary>True when <paramref name="endPoint"/> is this entry's endpoint.</summary>
    public bool Matches(IPEndPoint endPoint)
    {
        if (endPoint.Port != Port)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[16];
        return endPoint.Address.TryWriteBytes(bytes, out var written) && bytes[..written].SequenceEqual(Address);
    }
}

/// <summary>Iterates the entries of a datagram opened by <see cref="GossipCodec.TryOpen"/>.</summary>
public ref struct GossipReader
{
    private ReadOnlySpan<byte> _rest;
    private int _remaining;

    internal GossipReader(ReadOnlySpan<byte> entries, int count)
    {
        _rest = entries;
        _remaining = count;
    }

    /// <summary>Entries not yet read.</summary>
    public readonly int Remaining => _remaining;

    /// <summary>Reads the next entry; false when none is left or the rest is malformed (see <see cref="Malformed"/>).</summary>
    public bool TryRead(out GossipEntryRef entry)
    {
        entry = default;
        if (_remaining == 0 || Malformed)
        {
            return false;
        }

        var rest = _rest;
        if (!GossipCodec.TryReadEntry(ref rest, out entry))
        {
            Malformed = true;
            return false;
        }

        _rest = rest;
        _remaining--;
        if (_remaining == 0 && !_rest.IsEmpty)
        {
            Malformed = true;
        }

        return true;
    }

    /// <summary>True when an entry could not be decoded or bytes follow the last entry; entries read before stay valid.</summary>
    public bool Malformed { get; private set; }
}

/// <summary>Builds one datagram in a caller's buffer.</summary>
public ref struct GossipWriter
{
    private readonly Span<byte> _buffer;
    private int _length;
    private int _count;

    internal GossipWriter(Span<byte> buffer, string clusterId)
    {
        _buffer = buffer;
        BinaryPrimitives.WriteUInt32LittleEndian(buffer, GossipCodec.Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(buffer[4..], GossipCodec.Version);
        var idLength = Encoding.UTF8.GetBytes(clusterId, buffer[9..]);
        buffer[8] = checked((byte)idLength);
        _length = 9 + idLength;
    }

    /// <summary>Entries written.</summary>
    public readonly int Count => _count;

    /// <summary>Appends an entry; false (nothing written) when it and the trailer no longer fit.</summary>
    public bool TryAdd(string nodeId, IPEndPoint endPoint, long generation, long heartbeat, in NodeStats stats)
    {
        var size = GossipCodec.EntrySize(nodeId, endPoint);
        if (_length + size + GossipCodec.TrailerBytes > _buffer.Length || _count == ushort.MaxValue)
        {
            return false;
        }

        var e = _buffer.Slice(_length, size);
        var idLength = Encoding.UTF8.GetBytes(nodeId, e[1..]);
        e[0] = checked((byte)idLength);
        var six = endPoint.AddressFamily == AddressFamily.InterNetworkV6;
        e[1 + idLength] = six ? (byte)6 : (byte)4;
        var offset = 2 + idLength;
        endPoint.Address.TryWriteBytes(e[offset..], out var written);
        var f = e[(offset + written)..];
        BinaryPrimitives.WriteUInt16LittleEndian(f, (ushort)endPoint.Port);
        BinaryPrimitives.WriteInt64LittleEndian(f[2..], generation);
        BinaryPrimitives.WriteInt64LittleEndian(f[10..], heartbeat);
        BinaryPrimitives.WriteInt64LittleEndian(f[18..], stats.TotalBytes);
        BinaryPrimitives.WriteInt64LittleEndian(f[26..], stats.UsedBytes);
        BinaryPrimitives.WriteInt64LittleEndian(f[34..], stats.ProvisionedBytes);
        BinaryPrimitives.WriteDoubleLittleEndian(f[42..], stats.Load);
        BinaryPrimitives.WriteUInt32LittleEndian(f[50..], (uint)Math.Max(stats.VolumeCount, 0));
        BinaryPrimitives.WriteUInt32LittleEndian(f[54..], (uint)Math.Max(stats.AttachedCount, 0));
        _length += size;
        _count++;
        return true;
    }

    /// <summary>Writes the entry count and checksum; returns the datagram's length.</summary>
    public int Finish()
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer[6..], (ushort)_count);
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer[_length..], Crc32C.Compute(_buffer[.._length]));
        return _length + GossipCodec.TrailerBytes;
    }
}
