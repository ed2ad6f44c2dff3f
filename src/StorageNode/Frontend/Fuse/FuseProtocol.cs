using System.Runtime.InteropServices;

namespace Slab.Frontend.Fuse;

// The FUSE kernel protocol (include/uapi/linux/fuse.h), the part a server of one regular file
// needs: opcodes, INIT flags and the byte offsets of the messages it reads and writes. All fields
// are little-endian host order; every message starts with a header.

/// <summary>FUSE opcodes this server answers (others get ENOSYS).</summary>
internal enum FuseOpcode : uint
{
    Lookup = 1,
    Forget = 2,
    GetAttr = 3,
    SetAttr = 4,
    Open = 14,
    Read = 15,
    Write = 16,
    StatFs = 17,
    Release = 18,
    Fsync = 20,
    GetXattr = 22,
    ListXattr = 23,
    Flush = 25,
    Init = 26,
    OpenDir = 27,
    ReadDir = 28,
    ReleaseDir = 29,
    FsyncDir = 30,
    Access = 34,
    Interrupt = 36,
    Destroy = 38,
    BatchForget = 42,
    Fallocate = 43,
}

/// <summary>Sizes, offsets and flags of the FUSE messages (protocol 7.x, x ≥ 23).</summary>
internal static class FuseProtocol
{
    public const uint KernelMajor = 7;
    public const uint KernelMinor = 31;

    /// <summary>fuse_in_header: len u32, opcode u32, unique u64, nodeid u64, uid, gid, pid u32, total_extlen u16, padding u16.</summary>
    public const int InHeaderSize = 40;

    /// <summary>fuse_out_header: len u32, error i32 (minus errno), unique u64.</summary>
    public const int OutHeaderSize = 16;

    /// <summary>fuse_write_in: fh, offset u64, size, write_flags u32, lock_owner u64, flags, padding u32.</summary>
    public const int WriteInSize = 40;

    public const int AttrSize = 88;
    public const int EntryOutSize = 40 + AttrSize;
    public const int AttrOutSize = 16 + AttrSize;
    public const int OpenOutSize = 16;
    public const int WriteOutSize = 8;
    public const int StatFsOutSize = 80;
    public const int InitOutSize = 64;

    public const ulong RootNodeId = 1;
    public const ulong FileNodeId = 2;

    // INIT flags (fuse_init_in/out.flags).
    public const uint AsyncRead = 1u << 0;
    public const uint BigWrites = 1u << 5;
    public const uint AsyncDio = 1u << 15;
    public const uint AbortError = 1u << 21;
    public const uint MaxPages = 1u << 22;

    /// <summary>fuse_open_out.open_flags: direct writes to the file may run in parallel.</summary>
    public const uint OpenParallelDirectWrites = 1u << 6;

    /// <summary>fuse_setattr_in.valid: the size is to change.</summary>
    public const uint SetAttrSize = 1u << 3;

    // fallocate(2) modes.
    public const uint FallocKeepSize = 0x01;
    public const uint FallocPunchHole = 0x02;
    public const uint FallocZeroRange = 0x10;

    // errno values of FUSE's own answers (negated in the reply); a target's failures map through Block.BlockErrno.
    public const int ENOENT = 2;
    public const int EIO = Block.BlockErrno.EIO;
    public const int EPERM = Block.BlockErrno.EPERM;
    public const int EINVAL = Block.BlockErrno.EINVAL;
    public const int ENOSYS = 38;
    public const int EOPNOTSUPP = Block.BlockErrno.EOPNOTSUPP;
}

/// <summary>fuse_in_header, read from the start of a request.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
internal readonly struct FuseInHeader
{
    public readonly uint Length;
    public readonly FuseOpcode Opcode;
    public readonly ulong Unique;
    public readonly ulong NodeId;
    public readonly uint Uid;
    public readonly uint Gid;
    public readonly uint Pid;
    public readonly ushort TotalExtLength;
    public readonly ushort Padding;
}
