using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Buffers;
using Slab.Common;
using static Slab.Frontend.Fuse.FuseProtocol;

namespace Slab.Frontend.Fuse;

/// <summary>Settings of a <see cref="FuseFileServer"/>.</summary>
public sealed record FuseFileServerOptions
{
    /// <summary>
    /// Threads reading requests from the FUSE device. A request the target completes at once (a local
    /// replica's pwrite) runs on its reader, so this bounds how many such requests run in parallel.
    /// </summary>
    public int Workers { get; init; } = 8;

    /// <summary>Largest WRITE the kernel sends, bytes (a multiple of 4096; larger writes are split).</summary>
    public int MaxWrite { get; init; } = 1024 * 1024;

    /// <summary>Asynchronous (direct I/O) requests the kernel keeps outstanding at most.</summary>
    public ushort MaxBackground { get; init; } = 64;

    /// <summary>How long <see cref="FuseFileServer.DisposeAsync"/> waits for the readers and in-flight requests to end.</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// Serves one <see cref="IBlockTarget"/> as the regular file <c>MOUNTPOINT/NAME</c> of a FUSE
/// filesystem that slabd mounts itself, so that a loop device over that file reaches the target
/// without another process or socket in between (the attach path's nbdfuse + NBD hop).
/// </summary>
/// <remarks>
/// <para>The file has the target's size; reads, writes, fsync (→ flush) and fallocate (punch hole →
/// trim, zero range → write zeroes) go to the target. Every request is read into a 4 KiB-aligned
/// pooled buffer placed so that a WRITE's data and a READ's reply data start on a 4 KiB boundary
/// (what O_DIRECT replicas need, with no copy). A request the target completes synchronously is
/// answered by its reader; any other is answered by its continuation while the reader goes on with
/// another buffer.</para>
/// <para>Threading: <see cref="Mount"/> and <see cref="DisposeAsync"/> are not to be called
/// concurrently; the readers are dedicated background threads. A failure of the target becomes the
/// request's errno; nothing a client sends can end the server except unmounting.</para>
/// </remarks>
public sealed unsafe partial class FuseFileServer : IAsyncDisposable
{
    /// <summary>Where a request starts in its buffer: a WRITE's 40 + 40 header bytes end at 4096.</summary>
    private const int RequestOffset = AlignedBufferPool.Alignment - InHeaderSize - WriteInSize;

    /// <summary>Where payloads start: a WRITE's data, a reply's body (READ data included).</summary>
    private const int DataOffset = AlignedBufferPool.Alignment;

    /// <summary>Where a reply's header goes: just before its body.</summary>
    private const int ReplyOffset = DataOffset - OutHeaderSize;

    private readonly int _fd;
    private readonly string _mountPoint;
    private readonly byte[] _fileName;
    private readonly IBlockTarget _target;
    private readonly FuseFileServerOptions _options;
    private readonly ILogger _logger;
    private readonly int _readLength;
    private readonly int _bufferSize;
    private readonly Thread[] _readers;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _running;
    private int _disposed;

    private FuseFileServer(int fd, string mountPoint, string fileName, IBlockTarget target, FuseFileServerOptions options, ILogger logger)
    {
        _fd = fd;
        _mountPoint = mountPoint;
        _fileName = Encoding.UTF8.GetBytes(fileName);
        _target = target;
        _options = options;
        _logger = logger;
        _readLength = InHeaderSize + WriteInSize + options.MaxWrite + AlignedBufferPool.Alignment;
        _bufferSize = RequestOffset + _readLength;
        _readers = new Thread[options.Workers];
    }

    /// <summary>The mount point.</summary>
    public string MountPoint => _mountPoint;

    /// <summary>The served file's path.</summary>
    public string FilePath => Path.Combine(_mountPoint, Encoding.UTF8.GetString(_fileName));

    /// <summary>
    /// Mounts a FUSE filesystem at <paramref name="mountPoint"/> (an existing empty directory) holding
    /// the one file <paramref name="fileName"/> over <paramref name="target"/>, and starts serving it.
    /// Needs CAP_SYS_ADMIN. The target stays the caller's: it is not disposed here.
    /// </summary>
    /// <exception cref="IOException">/dev/fuse cannot be opened or the mount fails (the errno is in the message).</exception>
    public static FuseFileServer Mount(string mountPoint, string fileName, IBlockTarget target, FuseFileServerOptions options, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Workers < 1 || options.MaxWrite < 4096 || options.MaxWrite % 4096 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "at least one worker and a MaxWrite that is a positive multiple of 4096");
        }

        var fd = FuseNative.Open("/dev/fuse", FuseNative.O_RDWR | FuseNative.O_CLOEXEC);
        if (fd < 0)
        {
            throw new IOException($"cannot open /dev/fuse: {FuseNative.Describe(Marshal.GetLastPInvokeError())}");
        }

        var data = $"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read={options.MaxWrite}";
        if (FuseNative.MountFs("slab", mountPoint, "fuse.slab", FuseNative.MS_NOSUID | FuseNative.MS_NODEV, data) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            FuseNative.Close(fd);
            throw new IOException($"cannot mount FUSE at {mountPoint}: {FuseNative.Describe(errno)}");
        }

        var server = new FuseFileServer(fd, MountTable.Normalize(mountPoint), fileName, target, options, logger);
        server.Start();
        return server;
    }

    private void Start()
    {
        _running = _readers.Length;
        for (var i = 0; i < _readers.Length; i++)
        {
            _readers[i] = new Thread(Serve) { IsBackground = true, Name = $"fuse {Encoding.UTF8.GetString(_fileName)} {i}" };
            _readers[i].Start();
        }
    }

    /// <summary>Ends the connection (<c>/sys/fs/fuse/connections/N/abort</c>): blocked readers return ENODEV.</summary>
    private static void Abort(int connection)
    {
        try
        {
            File.WriteAllText($"/sys/fs/fuse/connections/{connection}/abort", "1");
        }
        catch (IOException)
        {
            // gone already, or fusectl is not mounted: the unmount ends the connection
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private void Serve()
    {
        AlignedBuffer? buffer = null;
        try
        {
            while (true)
            {
                buffer ??= AlignedBufferPool.Shared.Rent(_bufferSize);
                var length = FuseNative.Read(_fd, buffer.Pointer + RequestOffset, _readLength);
                if (length < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno is FuseNative.EINTR or FuseNative.EAGAIN or ENOENT)
                    {
                        continue; // a signal, or a request interrupted before we read it
                    }

                    if (errno != FuseNative.ENODEV)
                    {
                        FuseLog.ReadFailed(_logger, _mountPoint, FuseNative.Describe(errno));
                    }

                    return; // ENODEV: unmounted or aborted
                }

                if (length >= InHeaderSize && Handle(buffer, (int)length))
                {
                    buffer = null; // handed to the request's continuation
                }
            }
        }
        catch (Exception e)
        {
            FuseLog.ReaderFailed(_logger, _mountPoint, e);
        }
        finally
        {
            buffer?.Return();
            if (Interlocked.Decrement(ref _running) == 0)
            {
                _stopped.TrySetResult();
            }
        }
    }

    /// <summary>Answers one request; true when its buffer now belongs to a pending completion.</summary>
    private bool Handle(AlignedBuffer buffer, int length)
    {
        var request = buffer.Pointer + RequestOffset;
        var header = *(FuseInHeader*)request;
        var body = request + InHeaderSize;
        var bodyLength = length - InHeaderSize;
        var reply = buffer.Pointer + DataOffset;
        switch (header.Opcode)
        {
            case FuseOpcode.Init:
                return Answer(buffer, header.Unique, 0, Init(body, reply));
            case FuseOpcode.Lookup:
                var isFile = header.NodeId == RootNodeId && new ReadOnlySpan<byte>(body, Math.Max(0, bodyLength - 1)).SequenceEqual(_fileName);
                if (!isFile)
                {
                    return Answer(buffer, header.Unique, -ENOENT, 0);
                }

                new Span<byte>(reply, EntryOutSize).Clear();
                *(ulong*)reply = FileNodeId;
                *(ulong*)(reply + 16) = 3600; // entry_valid, s
                *(ulong*)(reply + 24) = 3600; // attr_valid, s
                FillAttr(reply + 40, FileNodeId);
                return Answer(buffer, header.Unique, 0, EntryOutSize);
            case FuseOpcode.GetAttr:
                return AnswerAttr(buffer, header);
            case FuseOpcode.SetAttr:
                // fuse_setattr_in: valid u32, padding u32, fh u64, size u64, ...
                if ((*(uint*)body & SetAttrSize) != 0 && *(ulong*)(body + 16) != (ulong)_target.Size)
                {
                    return Answer(buffer, header.Unique, -EPERM, 0); // the file's size is the volume's
                }

                return AnswerAttr(buffer, header);
            case FuseOpcode.Open:
            case FuseOpcode.OpenDir:
                new Span<byte>(reply, OpenOutSize).Clear();
                *(uint*)(reply + 8) = header.Opcode == FuseOpcode.Open ? OpenParallelDirectWrites : 0;
                return Answer(buffer, header.Unique, 0, OpenOutSize);
            case FuseOpcode.ReadDir:
                return Answer(buffer, header.Unique, 0, ReadDir(body, reply));
            case FuseOpcode.StatFs:
                new Span<byte>(reply, StatFsOutSize).Clear();
                *(ulong*)reply = (ulong)(_target.Size / 4096); // blocks
                *(ulong*)(reply + 24) = 1;                     // files
                *(uint*)(reply + 40) = 4096;                   // bsize
                *(uint*)(reply + 44) = 255;                    // namelen
                *(uint*)(reply + 48) = 4096;                   // frsize
                return Answer(buffer, header.Unique, 0, StatFsOutSize);
            case FuseOpcode.Release:
            case FuseOpcode.ReleaseDir:
            case FuseOpcode.FsyncDir:
            case FuseOpcode.Access:
                return Answer(buffer, header.Unique, 0, 0);
            case FuseOpcode.Read:
                return Read(buffer, header.Unique, *(ulong*)(body + 8), *(uint*)(body + 16));
            case FuseOpcode.Write:
                return Write(buffer, header.Unique, *(ulong*)(body + 8), *(uint*)(body + 16), bodyLength - WriteInSize);
            case FuseOpcode.Fsync:
            case FuseOpcode.Flush:
                ValueTask flush;
                try
                {
                    flush = _target.FlushAsync(CancellationToken.None);
                }
                catch (Exception e)
                {
                    flush = ValueTask.FromException(e);
                }

                return Complete(buffer, header.Unique, flush, 0);
            case FuseOpcode.Fallocate:
                return Fallocate(buffer, header.Unique, *(ulong*)(body + 8), *(ulong*)(body + 16), *(uint*)(body + 24));
            case FuseOpcode.Forget:
            case FuseOpcode.BatchForget:
            case FuseOpcode.Interrupt:
                return false; // no reply
            case FuseOpcode.Destroy:
                return Answer(buffer, header.Unique, 0, 0);
            case FuseOpcode.GetXattr:
            case FuseOpcode.ListXattr:
            default:
                return Answer(buffer, header.Unique, -ENOSYS, 0);
        }
    }

    private int Init(byte* body, byte* reply)
    {
        var kernelMinor = *(uint*)(body + 4);
        var maxReadahead = *(uint*)(body + 8);
        var kernelFlags = *(uint*)(body + 12);
        new Span<byte>(reply, InitOutSize).Clear();
        *(uint*)reply = KernelMajor;
        *(uint*)(reply + 4) = Math.Min(kernelMinor, KernelMinor);
        *(uint*)(reply + 8) = maxReadahead;
        *(uint*)(reply + 12) = kernelFlags & (AsyncRead | BigWrites | AsyncDio | AbortError | MaxPages);
        *(ushort*)(reply + 16) = _options.MaxBackground;
        *(ushort*)(reply + 18) = (ushort)(_options.MaxBackground * 3 / 4);
        *(uint*)(reply + 20) = (uint)_options.MaxWrite;
        *(uint*)(reply + 24) = 1; // time_gran, ns
        *(ushort*)(reply + 28) = (ushort)(_options.MaxWrite / 4096);
        return InitOutSize;
    }

    private bool AnswerAttr(AlignedBuffer buffer, in FuseInHeader header)
    {
        var reply = buffer.Pointer + DataOffset;
        new Span<byte>(reply, AttrOutSize).Clear();
        *(ulong*)reply = 3600; // attr_valid, s
        FillAttr(reply + 16, header.NodeId == RootNodeId ? RootNodeId : FileNodeId);
        return Answer(buffer, header.Unique, 0, AttrOutSize);
    }

    private void FillAttr(byte* attr, ulong node)
    {
        var size = node == FileNodeId ? _target.Size : 0;
        *(ulong*)attr = node;                         // ino
        *(ulong*)(attr + 8) = (ulong)size;            // size
        *(ulong*)(attr + 16) = (ulong)(size / 512);   // blocks
        *(uint*)(attr + 60) = node == FileNodeId ? 0x8180u : 0x41C0u; // S_IFREG 0600 / S_IFDIR 0700
        *(uint*)(attr + 64) = node == FileNodeId ? 1u : 2u;           // nlink
        *(uint*)(attr + 80) = 4096;                                   // blksize
    }

    /// <summary>The one directory entry (the file) at offset 0; nothing after it.</summary>
    private int ReadDir(byte* body, byte* reply)
    {
        var offset = *(ulong*)(body + 8);
        var size = *(uint*)(body + 16);
        var entryLength = (24 + _fileName.Length + 7) & ~7;
        if (offset != 0 || size < entryLength)
        {
            return 0;
        }

        new Span<byte>(reply, entryLength).Clear();
        *(ulong*)reply = FileNodeId;
        *(ulong*)(reply + 8) = 1;                 // next offset
        *(uint*)(reply + 16) = (uint)_fileName.Length;
        *(uint*)(reply + 20) = 8;                 // DT_REG
        _fileName.CopyTo(new Span<byte>(reply + 24, _fileName.Length));
        return entryLength;
    }

    private bool Read(AlignedBuffer buffer, ulong unique, ulong offset, uint size)
    {
        var targetSize = (ulong)_target.Size;
        var length = offset >= targetSize ? 0 : (int)Math.Min(Math.Min(size, targetSize - offset), (ulong)_options.MaxWrite);
        if (length == 0)
        {
            return Answer(buffer, unique, 0, 0);
        }

        ValueTask pending;
        try
        {
            pending = _target.ReadAsync((long)offset, buffer.Memory.Slice(DataOffset, length), CancellationToken.None);
        }
        catch (Exception e)
        {
            pending = ValueTask.FromException(e);
        }

        return Complete(buffer, unique, pending, length);
    }

    private bool Write(AlignedBuffer buffer, ulong unique, ulong offset, uint size, int received)
    {
        if (size > received)
        {
            return Answer(buffer, unique, -EINVAL, 0);
        }

        ValueTask pending;
        try
        {
            pending = _target.WriteAsync((long)offset, buffer.Memory.Slice(DataOffset, (int)size), BlockWriteFlags.None, CancellationToken.None);
        }
        catch (Exception e)
        {
            pending = ValueTask.FromException(e);
        }

        return Complete(buffer, unique, pending, WriteOutSize, writtenBytes: size);
    }

    private bool Fallocate(AlignedBuffer buffer, ulong unique, ulong offset, ulong length, uint mode)
    {
        if (mode == 0)
        {
            return Answer(buffer, unique, 0, 0); // allocate: a thin volume has nothing to reserve
        }

        if ((mode & FallocKeepSize) == 0)
        {
            return Answer(buffer, unique, -EOPNOTSUPP, 0); // the file's size is the volume's
        }

        var punch = (mode & ~(FallocKeepSize | FallocPunchHole)) == 0;
        if (!punch && (mode & ~(FallocKeepSize | FallocZeroRange)) != 0)
        {
            return Answer(buffer, unique, -EOPNOTSUPP, 0);
        }

        ValueTask pending;
        try
        {
            pending = punch
                ? _target.TrimAsync((long)offset, (long)length, CancellationToken.None)
                : _target.WriteZeroesAsync((long)offset, (long)length, WriteZeroesFlags.None, CancellationToken.None);
        }
        catch (Exception e)
        {
            pending = ValueTask.FromException(e);
        }

        return Complete(buffer, unique, pending, 0);
    }

    /// <summary>Answers when <paramref name="pending"/> is done: now if it is, else from its continuation (then true: the buffer is handed over).</summary>
    private bool Complete(AlignedBuffer buffer, ulong unique, ValueTask pending, int replyLength, uint writtenBytes = 0)
    {
        if (pending.IsCompleted)
        {
            var error = ErrorOf(pending);
            return Answer(buffer, unique, error, error == 0 ? Reply(buffer, replyLength, writtenBytes) : 0);
        }

        Interlocked.Increment(ref _running);
        _ = CompleteLaterAsync(buffer, unique, pending, replyLength, writtenBytes);
        return true;
    }

    /// <summary>Fills a WRITE's reply body (fuse_write_out); returns the body's length.</summary>
    private static int Reply(AlignedBuffer buffer, int replyLength, uint writtenBytes)
    {
        if (replyLength == WriteOutSize)
        {
            *(ulong*)(buffer.Pointer + DataOffset) = writtenBytes; // size u32 + padding u32
        }

        return replyLength;
    }

    private int ErrorOf(ValueTask completed)
    {
        try
        {
            completed.GetAwaiter().GetResult(); // completed: observes the result, never blocks
            return 0;
        }
        catch (Exception e)
        {
            return ErrnoOf(e);
        }
    }

    private int ErrnoOf(Exception e)
    {
        if (e is BlockTargetException block)
        {
            return -BlockErrno.Of(block.Error);
        }

        FuseLog.RequestFailed(_logger, _mountPoint, e);
        return -EIO;
    }

    /// <summary>Writes the reply (header before the body at <see cref="DataOffset"/>); false: the buffer stays the caller's.</summary>
    private bool Answer(AlignedBuffer buffer, ulong unique, int error, int bodyLength)
    {
        var header = buffer.Pointer + ReplyOffset;
        var length = OutHeaderSize + (error == 0 ? bodyLength : 0);
        *(uint*)header = (uint)length;
        *(int*)(header + 4) = error;
        *(ulong*)(header + 8) = unique;
        if (FuseNative.Write(_fd, header, length) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno is not (ENOENT or FuseNative.ENODEV))
            {
                FuseLog.ReplyFailed(_logger, _mountPoint, FuseNative.Describe(errno));
            }
        }

        return false;
    }
}
