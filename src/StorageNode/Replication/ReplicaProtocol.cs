using Slab.Common;
using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Slab.Block;

namespace Slab.Replication;

/// <summary>Request opcodes (u16 on the wire).</summary>
public enum ReplicaOpcode : ushort
{
    Read = 1,
    Write = 2,
    Flush = 3,
    Trim = 4,
    WriteZeroes = 5,
    Extents = 6,
    Ping = 7,
}

/// <summary>Request flags (u16 on the wire); which are valid depends on the opcode.</summary>
[Flags]
public enum ReplicaRequestFlags : ushort
{
    None = 0,
    /// <summary>Write, Trim, WriteZeroes: durable before the response.</summary>
    ForceUnitAccess = 1,
    /// <summary>WriteZeroes: the range stays allocated.</summary>
    NoHole = 2,
}

/// <summary>Response status (u16 on the wire).</summary>
public enum ReplicaStatus : ushort
{
    Ok = 0,
    /// <summary>The request's epoch is lower than the replica's: another controller owns the volume.</summary>
    StaleEpoch = 1,
    /// <summary>This node has no replica of the volume.</summary>
    UnknownVolume = 2,
    /// <summary>The request's epoch is higher than the replica's and the replica did not accept it.</summary>
    EpochRejected = 3,
    OutOfRange = 10,
    InvalidArgument = 11,
    ReadOnly = 12,
    NoSpace = 13,
    NotSupported = 14,
    IOError = 15,
    Closed = 16,
}

/// <summary>
/// Wire constants and frame codecs of protocol v1 (docs/replication-protocol.md). All integers are
/// little-endian; GUIDs are their 16 RFC 4122 (big-endian) bytes.
/// </summary>
internal static class ReplicaProtocol
{
    public const ushort Version1 = 1;

    /// <summary>"SLHC": the client hello.</summary>
    public const uint ClientHelloMagic = 0x43484C53;

    /// <summary>"SLHS": the server hello.</summary>
    public const uint ServerHelloMagic = 0x53484C53;

    /// <summary>"SLRQ": a request.</summary>
    public const uint RequestMagic = 0x51524C53;

    /// <summary>"SLRP": a response.</summary>
    public const uint ResponseMagic = 0x50524C53;

    public const int ClientHelloSize = 32;
    public const int ServerHelloSize = 36;
    public const int RequestHeaderSize = 60;
    public const int ResponseHeaderSize = 28;

    /// <summary>Longest refusal reason and longest error message in bytes.</summary>
    public const int MaxMessageLength = 1024;

    /// <summary>Extents one response carries at most.</summary>
    public const int MaxExtentsPerResponse = 1024;

    /// <summary>Size of one encoded extent: length u64, flags u32, reserved u32.</summary>
    public const int ExtentSize = 16;

    /// <summary>Size of a volume Ping's response data: size u64, epoch u64.</summary>
    public const int PingInfoSize = 16;

    /// <summary>Request ids carry the slot index in their low bits; this bounds slots per connection.</summary>
    public const int MaxSlots = 4096;

    public const int SlotBits = 12;

    /// <summary>
    /// Longest range of one Trim, WriteZeroes or Extents request: the u32 length field, rounded down
    /// to 4 KiB so split requests stay aligned.
    /// </summary>
    public const uint MaxRangeLength = 0xFFFF_F000;

    public static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    public static void WriteGuid(Span<byte> destination, Guid value) => value.TryWriteBytes(destination, bigEndian: true, out _);

    public static Guid ReadGuid(ReadOnlySpan<byte> source) => new(source[..16], bigEndian: true);

    /// <summary>Copies the first <paramref name="destination"/>.Length bytes of a sequence.</summary>
    public static void Peek(in ReadOnlySequence<byte> buffer, Span<byte> destination) => buffer.Slice(0, destination.Length).CopyTo(destination);

    public static ReplicaStatus ToStatus(BlockError error) => error switch
    {
        BlockError.OutOfRange => ReplicaStatus.OutOfRange,
        BlockError.InvalidArgument => ReplicaStatus.InvalidArgument,
        BlockError.ReadOnly => ReplicaStatus.ReadOnly,
        BlockError.NoSpace => ReplicaStatus.NoSpace,
        BlockError.NotSupported => ReplicaStatus.NotSupported,
        BlockError.Closed => ReplicaStatus.Closed,
        BlockError.Fenced => ReplicaStatus.StaleEpoch,
        _ => ReplicaStatus.IOError,
    };

    /// <summary>The block error a client raises for a failed status (never called with Ok).</summary>
    public static BlockError ToBlockError(ReplicaStatus status) => status switch
    {
        ReplicaStatus.StaleEpoch => BlockError.Fenced,
        ReplicaStatus.UnknownVolume => BlockError.Closed,
        ReplicaStatus.OutOfRange => BlockError.OutOfRange,
        ReplicaStatus.InvalidArgument => BlockError.InvalidArgument,
        ReplicaStatus.ReadOnly => BlockError.ReadOnly,
        ReplicaStatus.NoSpace => BlockError.NoSpace,
        ReplicaStatus.NotSupported => BlockError.NotSupported,
        ReplicaStatus.Closed => BlockError.Closed,
        _ => BlockError.IOError,
    };
}

/// <summary>The client hello: the versions the client speaks and its node id.</summary>
internal readonly record struct ClientHello(ushort MinVersion, ushort MaxVersion, Guid NodeId)
{
    public void Write(Span<byte> span)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(span, ReplicaProtocol.ClientHelloMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], MinVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], MaxVersion);
        ReplicaProtocol.WriteGuid(span[8..], NodeId);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(span[28..], Crc32C.Compute(span[..28]));
    }

    /// <summary>Decodes a hello; null with a reason when the frame is malformed.</summary>
    public static ClientHello? TryParse(ReadOnlySpan<byte> span, out string? error)
    {
        error = null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span) != ReplicaProtocol.ClientHelloMagic)
        {
            error = "bad hello magic";
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(span[28..]) != Crc32C.Compute(span[..28]))
        {
            error = "bad hello crc";
            return null;
        }

        return new ClientHello(
            BinaryPrimitives.ReadUInt16LittleEndian(span[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(span[6..]),
            ReplicaProtocol.ReadGuid(span[8..]));
    }
}

/// <summary>The server hello: accepted with a version, or refused; followed by <see cref="ReasonLength"/> bytes of UTF-8 reason.</summary>
internal readonly record struct ServerHello(bool Accepted, ushort Version, Guid NodeId, uint MaxPayload, ushort ReasonLength)
{
    public void Write(Span<byte> span)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(span, ReplicaProtocol.ServerHelloMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], Accepted ? (ushort)0 : (ushort)1);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], Version);
        ReplicaProtocol.WriteGuid(span[8..], NodeId);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], MaxPayload);
        BinaryPrimitives.WriteUInt16LittleEndian(span[28..], ReasonLength);
        BinaryPrimitives.WriteUInt16LittleEndian(span[30..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(span[32..], Crc32C.Compute(span[..32]));
    }

    public static ServerHello? TryParse(ReadOnlySpan<byte> span, out string? error)
    {
        error = null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span) != ReplicaProtocol.ServerHelloMagic)
        {
            error = "bad server hello magic";
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(span[32..]) != Crc32C.Compute(span[..32]))
        {
            error = "bad server hello crc";
            return null;
        }

        var result = BinaryPrimitives.ReadUInt16LittleEndian(span[4..]);
        var reasonLength = BinaryPrimitives.ReadUInt16LittleEndian(span[28..]);
        if (result > 1 || reasonLength > ReplicaProtocol.MaxMessageLength)
        {
            error = "malformed server hello";
            return null;
        }

        return new ServerHello(
            result == 0,
            BinaryPrimitives.ReadUInt16LittleEndian(span[6..]),
            ReplicaProtocol.ReadGuid(span[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[24..]),
            reasonLength);
    }
}

/// <summary>A request header (60 bytes). <see cref="PayloadCrc"/> is the CRC-32C of a Write's payload, else 0.</summary>
internal readonly record struct RequestHeader(
    ReplicaOpcode Opcode,
    ReplicaRequestFlags Flags,
    ulong RequestId,
    Guid VolumeId,
    ulong Epoch,
    ulong Offset,
    uint Length,
    uint PayloadCrc)
{
    public void Write(Span<byte> span)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(span, ReplicaProtocol.RequestMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], (ushort)Opcode);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], (ushort)Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], RequestId);
        ReplicaProtocol.WriteGuid(span[16..], VolumeId);
        BinaryPrimitives.WriteUInt64LittleEndian(span[32..], Epoch);
        BinaryPrimitives.WriteUInt64LittleEndian(span[40..], Offset);
        BinaryPrimitives.WriteUInt32LittleEndian(span[48..], Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[52..], PayloadCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(span[56..], Crc32C.Compute(span[..56]));
    }

    /// <summary>Decodes a header; null with a reason for a bad magic or crc (the caller closes the connection).</summary>
    public static RequestHeader? TryParse(ReadOnlySpan<byte> span, out string? error)
    {
        error = null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span) != ReplicaProtocol.RequestMagic)
        {
            error = "bad request magic";
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(span[56..]) != Crc32C.Compute(span[..56]))
        {
            error = "bad request header crc";
            return null;
        }

        return new RequestHeader(
            (ReplicaOpcode)BinaryPrimitives.ReadUInt16LittleEndian(span[4..]),
            (ReplicaRequestFlags)BinaryPrimitives.ReadUInt16LittleEndian(span[6..]),
            BinaryPrimitives.ReadUInt64LittleEndian(span[8..]),
            ReplicaProtocol.ReadGuid(span[16..]),
            BinaryPrimitives.ReadUInt64LittleEndian(span[32..]),
            BinaryPrimitives.ReadUInt64LittleEndian(span[40..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[48..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[52..]));
    }
}

/// <summary>A response header (28 bytes), followed by <see cref="Length"/> bytes of data whose CRC-32C is <see cref="DataCrc"/>.</summary>
internal readonly record struct ResponseHeader(ReplicaStatus Status, ulong RequestId, uint Length, uint DataCrc)
{
    public void Write(Span<byte> span)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(span, ReplicaProtocol.ResponseMagic);
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], (ushort)Status);
        BinaryPrimitives.WriteUInt16LittleEndian(span[6..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], RequestId);
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], Length);
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], DataCrc);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], Crc32C.Compute(span[..24]));
    }

    public static ResponseHeader? TryParse(ReadOnlySpan<byte> span, out string? error)
    {
        error = null;
        if (BinaryPrimitives.ReadUInt32LittleEndian(span) != ReplicaProtocol.ResponseMagic)
        {
            error = "bad response magic";
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(span[24..]) != Crc32C.Compute(span[..24]))
        {
            error = "bad response header crc";
            return null;
        }

        return new ResponseHeader(
            (ReplicaStatus)BinaryPrimitives.ReadUInt16LittleEndian(span[4..]),
            BinaryPrimitives.ReadUInt64LittleEndian(span[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[16..]),
            BinaryPrimitives.ReadUInt32LittleEndian(span[20..]));
    }
}
