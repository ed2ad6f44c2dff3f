using Slab.Block;
using Tmds.Linux;

namespace Slab.Store;

/// <summary>
/// A thin volume replica: a sparse regular file on an XFS drive, served as an <see cref="IBlockTarget"/>.
/// Holes are unprovisioned space; TRIM punches holes; block status comes from SEEK_DATA/SEEK_HOLE.
/// </summary>
/// <remarks>
/// <para><b>Synchronous calls.</b> The I/O members return <see cref="ValueTask"/> to fit the seam, but
/// they perform the syscall on the calling thread and return an already completed task (faulted on
/// failure). A read or write therefore blocks its caller for the duration of the disk I/O; callers
/// that must not block (event loops) dispatch onto the thread pool. The
/// <see cref="CancellationToken"/> is only checked before the syscall starts.</para>
/// <para><b>Alignment.</b> Requests whose offset, length and memory are 4 KiB aligned (memory from
/// <see cref="Buffers.AlignedBufferPool"/>) go straight to pread/pwrite without a copy or an
/// allocation. Any other request is bounced through a pooled aligned buffer; an unaligned write
/// read-modify-writes its edge blocks under an exclusive stripe lock
/// (<see cref="ReplicaFileStripeLock"/>) while whole-block writers hold the stripes shared, so
/// non-overlapping writes never disturb each other whatever their alignment.</para>
/// <para><b>Durability.</b> One fd is shared by every user of the replica, so <see cref="FlushAsync"/>
/// (fdatasync) covers writes from every connection: the target advertises
/// <see cref="BlockTargetFeatures.MultiConnection"/>. ForceUnitAccess writes use pwritev2(RWF_DSYNC).</para>
/// <para><b>Size.</b> The size is always a multiple of <see cref="BlockSize"/> and equals the file
/// length; it only grows (<see cref="Grow"/>).</para>
/// <para><b>Errors.</b> Every member of the seam fails with <see cref="BlockTargetException"/> only:
/// ENOSPC/EDQUOT → NoSpace, use after <see cref="Dispose"/> → Closed, other errno → IOError (the
/// errno is in the inner <see cref="LinuxFileException"/>). All members are thread-safe.</para>
/// </remarks>
public sealed partial class ReplicaFile : IBlockTarget, IDisposable
{
    /// <summary>The I/O granularity in bytes: the alignment O_DIRECT needs and the RMW unit.</summary>
    public const int BlockSize = 4096;

    /// <summary>Largest request the target prefers in bytes; larger ones are still served.</summary>
    public const int MaximumRequest = 32 * 1024 * 1024;

    private const int FileMode = 0x180; // 0600

    private readonly FileDescriptorHandle _handle;
    private readonly ReplicaFileStripeLock _stripes = new();
    private readonly Lock _growLock = new();
    private long _size;

    private ReplicaFile(FileDescriptorHandle handle, string path, long size, ReplicaFileOptions options)
    {
        _handle = handle;
        _size = size;
        FilePath = path;
        IsReadOnly = options.ReadOnly;
        IsDirectIo = options.DirectIo;
        Features = BlockTargetFeatures.Flush | BlockTargetFeatures.ForceUnitAccess | BlockTargetFeatures.Trim
            | BlockTargetFeatures.WriteZeroes | BlockTargetFeatures.BlockStatus | BlockTargetFeatures.MultiConnection
            | (options.ReadOnly ? BlockTargetFeatures.ReadOnly : BlockTargetFeatures.None);
    }

    /// <summary>Absolute path of the replica file.</summary>
    public string FilePath { get; }

    public bool IsReadOnly { get; }

    /// <summary>True when the file is open with O_DIRECT.</summary>
    public bool IsDirectIo { get; }

    /// <summary>Current size in bytes (a multiple of <see cref="BlockSize"/>); updated by <see cref="Grow"/> at once.</summary>
    public long Size => Volatile.Read(ref _size);

    public BlockTargetFeatures Features { get; }

    /// <summary>Any alignment accepted; 4 KiB preferred; 32 MiB per request.</summary>
    public BlockGeometry Geometry => new(1, BlockSize, MaximumRequest);

    /// <summary>
    /// Creates a new sparse replica file of <paramref name="sizeBytes"/> bytes (no data blocks
    /// allocated), makes the file and its directory entry durable, and opens it.
    /// </summary>
    /// <param name="sizeBytes">A non-negative multiple of <see cref="BlockSize"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">The size is negative or not 4 KiB aligned.</exception>
    /// <exception cref="LinuxFileException">The file exists (errno EEXIST), or a syscall failed; nothing is left behind.</exception>
    public static ReplicaFile Create(string path, long sizeBytes, ReplicaFileOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sizeBytes);
        if (sizeBytes % BlockSize != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), sizeBytes, $"the size must be a multiple of {BlockSize} bytes");
        }

        path = Path.GetFullPath(path);
        var fd = LinuxFile.Open(path, LibC.O_RDWR | LibC.O_CREAT | LibC.O_EXCL | LibC.O_CLOEXEC, FileMode);
        try
        {
            var errno = LinuxFile.Truncate(fd, sizeBytes);
            if (errno != 0)
            {
                throw new LinuxFileException(errno, "ftruncate", path);
            }

            errno = LinuxFile.Sync(fd);
            if (errno != 0)
            {
                throw new LinuxFileException(errno, "fsync", path);
            }

            LinuxFile.Close(fd);
            fd = -1;
            LinuxFile.SyncParentDirectory(path);
            return Open(path, options ?? ReplicaFileOptions.Default);
        }
        catch
        {
            if (fd >= 0)
            {
                LinuxFile.Close(fd);
            }

            LinuxFile.TryUnlink(path);
            throw;
        }
    }

    /// <summary>Opens an existing replica file.</summary>
    /// <exception cref="LinuxFileException">open/fstat failed (ENOENT, EACCES; EINVAL for O_DIRECT on a filesystem without it).</exception>
    /// <exception cref="InvalidDataException">The path is not a regular file, or its length is not a multiple of <see cref="BlockSize"/>.</exception>
    public static ReplicaFile Open(string path, ReplicaFileOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        path = Path.GetFullPath(path);
        var flags = (options.ReadOnly ? LibC.O_RDONLY : LibC.O_RDWR) | LibC.O_CLOEXEC | (options.DirectIo ? LibC.O_DIRECT : 0);
        var fd = LinuxFile.Open(path, flags, 0);
        var handle = new FileDescriptorHandle(fd);
        try
        {
            var errno = LinuxFile.Stat(fd, out var size, out _, out var regular);
            if (errno != 0)
            {
                throw new LinuxFileException(errno, "fstat", path);
            }

            if (!regular)
            {
                throw new InvalidDataException($"'{path}' is not a regular file");
            }

            if (size % BlockSize != 0)
            {
                throw new InvalidDataException($"'{path}' is {size} bytes long, not a multiple of {BlockSize}");
            }

            return new ReplicaFile(handle, path, size, options);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Closes the file. Operations already running finish first (the fd is closed when the last one
    /// returns); later calls fail with <see cref="BlockError.Closed"/>. Idempotent.
    /// </summary>
    public void Dispose() => _handle.Dispose();

    /// <summary>Takes a reference on the fd for one operation; pair with <see cref="Exit"/>.</summary>
    private int Enter()
    {
        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            throw Closed();
        }

        return (int)_handle.DangerousGetHandle();
    }

    private void Exit() => _handle.DangerousRelease();

    private void ThrowIfReadOnly()
    {
        if (IsReadOnly)
        {
            throw new BlockTargetException(BlockError.ReadOnly, $"replica '{FilePath}' is read-only");
        }
    }

    private BlockTargetException Closed()
        => new(BlockError.Closed, $"replica '{FilePath}' is closed");

    /// <summary>Maps a failed syscall's errno to the block-layer error; the errno rides in the inner exception.</summary>
    private BlockTargetException Failure(int errno, string operation, long offset, long length)
    {
        var error = errno switch
        {
            _ when errno == LibC.ENOSPC || errno == LibC.EDQUOT => BlockError.NoSpace,
            _ when errno == LibC.EBADF && _handle.IsClosed => BlockError.Closed,
            _ when errno == LibC.EROFS => BlockError.ReadOnly,
            _ when errno == LibC.EOPNOTSUPP => BlockError.NotSupported,
            _ => BlockError.IOError,
        };
        var inner = new LinuxFileException(errno, operation, FilePath);
        return new BlockTargetException(
            error,
            $"{operation} [{offset}, +{length}) on replica '{FilePath}' failed: {LinuxFile.Describe(errno)} (errno {errno})",
            inner);
    }
}
