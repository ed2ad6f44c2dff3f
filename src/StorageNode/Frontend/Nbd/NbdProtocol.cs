namespace Slab.Frontend.Nbd;

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md). Every multi-byte field
// on the wire is big-endian. Names follow the spec without the NBD_ prefix.

/// <summary>Magic numbers and fixed sizes.</summary>
internal static class NbdMagic
{
    /// <summary>"NBDMAGIC", first 8 bytes of every server greeting.</summary>
    public const ulong InitPassword = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": newstyle greeting and prefix of every client option.</summary>
    public const ulong OptionMagic = 0x49484156454F5054;

    /// <summary>Prefix of every fixed-newstyle option reply.</summary>
    public const ulong OptionReplyMagic = 0x3e889045565a9;

    public const uint Request = 0x25609513;
    public const uint SimpleReply = 0x67446698;
    public const uint StructuredReply = 0x668e33ef;

    /// <summary>Bytes in a request header (magic, flags, type, cookie, offset, length).</summary>
    public const int RequestHeaderSize = 28;

    /// <summary>Bytes in a simple reply header (magic, error, cookie).</summary>
    public const int SimpleReplyHeaderSize = 16;

    /// <summary>Bytes in a structured reply chunk header (magic, flags, type, cookie, length).</summary>
    public const int StructuredReplyHeaderSize = 20;

    /// <summary>Bytes of an option header after the magic (option, length).</summary>
    public const int OptionHeaderSize = 16;

    /// <summary>Bytes of an option reply header (magic, option, type, length).</summary>
    public const int OptionReplyHeaderSize = 20;

    /// <summary>Zero padding after the NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was negotiated.</summary>
    public const int ExportNameZeroPadding = 124;

    /// <summary>Longest string (export name, query, message) the spec allows, in bytes.</summary>
    public const int MaxStringLength = 4096;
}

/// <summary>Server handshake flags (16 bits).</summary>
[Flags]
internal enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Client flags (32 bits).</summary>
[Flags]
internal enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>Transmission flags (16 bits) sent with the export size.</summary>
[Flags]
internal enum NbdTransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

/// <summary>Option types sent during haggling.</summary>
internal enum NbdOption : uint
{
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

/// <summary>Option reply types; errors have bit 31 set.</summary>
internal enum NbdOptionReply : uint
{
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsupported = (1u << 31) + 1,
    ErrPolicy = (1u << 31) + 2,
    ErrInvalid = (1u << 31) + 3,
    ErrPlatform = (1u << 31) + 4,
    ErrTlsRequired = (1u << 31) + 5,
    ErrUnknown = (1u << 31) + 6,
    ErrShutdown = (1u << 31) + 7,
    ErrBlockSizeRequired = (1u << 31) + 8,
    ErrTooBig = (1u << 31) + 9,
}

/// <summary>Information types in NBD_REP_INFO replies and NBD_OPT_INFO/GO requests.</summary>
internal enum NbdInfo : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}

/// <summary>Transmission request types.</summary>
internal enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}

/// <summary>Command flags (16 bits) of a request.</summary>
[Flags]
internal enum NbdCommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    DontFragment = 1 << 2,
    RequestOne = 1 << 3,
    FastZero = 1 << 4,
}

/// <summary>Structured reply chunk types; error chunks have bit 15 set.</summary>
internal enum NbdReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = (1 << 15) + 1,
    ErrorOffset = (1 << 15) + 2,
}

/// <summary>Structured reply chunk flags.</summary>
[Flags]
internal enum NbdReplyFlags : ushort
{
    None = 0,
    Done = 1 << 0,
}

/// <summary>Error values of replies (the spec's restricted errno set).</summary>
internal enum NbdErrno : uint
{
    None = 0,
    EPERM = 1,
    EIO = 5,
    ENOMEM = 12,
    EINVAL = 22,
    ENOSPC = 28,
    EOVERFLOW = 75,
    ENOTSUP = 95,
    ESHUTDOWN = 108,
}

/// <summary>Metadata contexts this server offers.</summary>
internal static class NbdMetaContexts
{
    /// <summary>The only context: allocation status, flags bit-compatible with <see cref="Block.ExtentFlags"/>.</summary>
    public const string BaseAllocation = "base:allocation";

    /// <summary>The namespace wildcard that lists every base: context.</summary>
    public const string BaseNamespace = "base:";

    /// <summary>Context id we assign to base:allocation (ids are per connection and opaque to clients).</summary>
    public const uint BaseAllocationId = 1;
}
