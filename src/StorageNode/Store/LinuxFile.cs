using System.Runtime.InteropServices;
using System.Text;
using Tmds.Linux;

namespace Slab.Store;

/// <summary>
/// Thin wrappers over the Linux file syscalls the replica store needs. Every wrapper retries on
/// EINTR and reports failure as an errno (0 = success) instead of throwing, so the data path can
/// map it to a <see cref="Block.BlockTargetException"/> without allocating on success.
/// </summary>
/// <remarks>
/// Tmds.LibC provides most calls; what it lacks (pwritev2, rename, SEEK_DATA/SEEK_HOLE,
/// FALLOC_FL_ZERO_RANGE, FICLONE) is declared here. All members are thread-safe (plain syscalls).
/// </remarks>
internal static unsafe partial class LinuxFile
{
    /// <summary><c>lseek</c> whence: next offset holding data.</summary>
    public const int SeekData = 3;

    /// <summary><c>lseek</c> whence: next offset in a hole (EOF counts as a hole).</summary>
    public const int SeekHole = 4;

    /// <summary><c>fallocate</c> mode: convert the range to zeroes while keeping it allocated.</summary>
    public const int FallocZeroRange = 0x10;

    /// <summary><c>ioctl(dest, FICLONE, src)</c>: share all of src's extents with dest (_IOW(0x94, 9, int)).</summary>
    public const int Ficlone = 0x40049409;

    /// <summary><c>pwritev2</c> flag: per-write O_DSYNC (the block layer may use FUA).</summary>
    public const int RwfDsync = 0x2;

    public const int ENXIO = 6;
    public const int ENOTTY = 25;
    public const int ENOSYS = 38;

    private const int IfMt = 0xF000;
    private const int IfReg = 0x8000;

    /// <summary>
    /// Forces libc to load before the first real call. The first P/Invoke into "libc" in a process
    /// can report a bogus errno (the library probing clobbers it), so warm both import paths once.
    /// </summary>
    private static readonly int _warmUp = getpid() + LibC.getpid();

    [LibraryImport("libc", EntryPoint = "getpid")]
    private static partial int getpid();

    [LibraryImport("libc", EntryPoint = "pwritev2", SetLastError = true)]
    private static partial nint pwritev2(int fd, IoVector* iov, int iovcnt, long offset, int flags);

    [LibraryImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static partial int rename(byte* oldPath, byte* newPath);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, void* argument);

    /// <summary><c>ioctl(fd, request, argument)</c> for requests that take a pointer, retried on EINTR; returns errno, 0 on success.</summary>
    public static int Ioctl(int fd, nuint request, void* argument)
    {
        EnsureLoaded();
        while (ioctl(fd, request, argument) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != LibC.EINTR)
            {
                return errno == 0 ? LibC.EIO : errno;
            }
        }

        return 0;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct IoVector
    {
        public void* Base;
        public nuint Length;
    }

    /// <summary>Ensures the static warm-up ran (cheap after the first call).</summary>
    public static void EnsureLoaded() => GC.KeepAlive(_warmUp);

    /// <summary>The errno of the last failed call on this thread; never 0 (EIO stands in).</summary>
    public static int LastErrno()
    {
        var errno = LibC.errno;
        return errno == 0 ? LibC.EIO : errno;
    }

    /// <summary>The text for an errno ("No space left on device").</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    /// <summary>Opens <paramref name="path"/>; returns the fd or throws <see cref="LinuxFileException"/>.</summary>
    public static int Open(string path, int flags, int mode)
    {
        EnsureLoaded();
        var bytes = NullTerminated(path);
        fixed (byte* p = bytes)
        {
            while (true)
            {
                var fd = LibC.open(p, flags, (mode_t)(uint)mode);
                if (fd >= 0)
                {
                    return fd;
                }

                var errno = LastErrno();
                if (errno != LibC.EINTR)
                {
                    throw new LinuxFileException(errno, "open", path);
                }
            }
        }
    }

    /// <summary>Closes an fd opened by <see cref="Open"/> outside a handle (errors ignored: the fd is gone either way).</summary>
    public static void Close(int fd) => _ = LibC.close(fd);

    /// <summary>
    /// Reads until <paramref name="count"/> bytes or end of file. Returns errno (0 on success) and the
    /// bytes read in <paramref name="done"/>; fewer than count means EOF.
    /// </summary>
    public static int ReadFull(int fd, byte* buffer, long count, long offset, out long done)
    {
        done = 0;
        while (done < count)
        {
            var n = (long)LibC.pread(fd, buffer + done, (size_t)(ulong)(count - done), offset + done);
            if (n > 0)
            {
                done += n;
            }
            else if (n == 0)
            {
                return 0;
            }
            else
            {
                var errno = LastErrno();
                if (errno != LibC.EINTR)
                {
                    return errno;
                }
            }
        }

        return 0;
    }

    /// <summary>
    /// Writes all <paramref name="count"/> bytes (looping on short writes). With <paramref name="dsync"/>
    /// each write is durable when it returns (pwritev2 RWF_DSYNC, falling back to pwrite + fdatasync
    /// where the kernel lacks it). Returns errno, 0 on success.
    /// </summary>
    public static int WriteFull(int fd, byte* buffer, long count, long offset, bool dsync)
    {
        var useDsyncFlag = dsync && !_noRwfDsync;
        long done = 0;
        while (done < count)
        {
            long n;
            if (useDsyncFlag)
            {
                var iov = new IoVector { Base = buffer + done, Length = (nuint)(count - done) };
                n = pwritev2(fd, &iov, 1, offset + done, RwfDsync);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno is ENOSYS || errno == LibC.EOPNOTSUPP)
                    {
                        _noRwfDsync = true;
                        useDsyncFlag = false;
                        continue;
                    }

                    if (errno == LibC.EINTR)
                    {
                        continue;
                    }

                    return errno == 0 ? LibC.EIO : errno;
                }
            }
            else
            {
                n = (long)LibC.pwrite(fd, buffer + done, (size_t)(ulong)(count - done), offset + done);
                if (n < 0)
                {
                    var errno = LastErrno();
                    if (errno == LibC.EINTR)
                    {
                        continue;
                    }

                    return errno;
                }
            }

            if (n == 0)
            {
                // pwrite of a positive count never returns 0 on a regular file; don't spin.
                return LibC.EIO;
            }

            done += n;
        }

        return dsync && !useDsyncFlag ? DataSync(fd) : 0;
    }

    private static volatile bool _noRwfDsync;

    /// <summary><c>fdatasync</c>; returns errno, 0 on success.</summary>
    public static int DataSync(int fd)
    {
        while (LibC.fdatasync(fd) != 0)
        {
            var errno = LastErrno();
            if (errno != LibC.EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary><c>fsync</c>; returns errno, 0 on success.</summary>
    public static int Sync(int fd)
    {
        while (LibC.fsync(fd) != 0)
        {
            var errno = LastErrno();
            if (errno != LibC.EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary><c>fallocate(fd, mode, offset, length)</c>; returns errno, 0 on success.</summary>
    public static int Allocate(int fd, int mode, long offset, long length)
    {
        while (LibC.fallocate(fd, mode, offset, length) != 0)
        {
            var errno = LastErrno();
            if (errno != LibC.EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary><c>ftruncate</c>; returns errno, 0 on success.</summary>
    public static int Truncate(int fd, long length)
    {
        while (LibC.ftruncate(fd, length) != 0)
        {
            var errno = LastErrno();
            if (errno != LibC.EINTR)
            {
                return errno;
            }
        }

        return 0;
    }

    /// <summary><c>lseek</c>; returns the new offset, or -1 with <paramref name="errno"/> set.</summary>
    public static long Seek(int fd, long offset, int whence, out int errno)
    {
        var result = (long)LibC.lseek(fd, offset, whence);
        errno = result < 0 ? LastErrno() : 0;
        return result;
    }

    /// <summary><c>fstat</c>: size and allocated bytes; returns errno, 0 on success.</summary>
    public static int Stat(int fd, out long size, out long allocatedBytes, out bool isRegular)
    {
        stat st;
        if (LibC.fstat(fd, &st) != 0)
        {
            size = allocatedBytes = 0;
            isRegular = false;
            return LastErrno();
        }

        size = (long)st.st_size;
        allocatedBytes = (long)st.st_blocks * 512;
        isRegular = ((int)st.st_mode & IfMt) == IfReg;
        return 0;
    }

    /// <summary><c>ioctl(destinationFd, FICLONE, sourceFd)</c>; returns errno, 0 on success.</summary>
    public static int Clone(int destinationFd, int sourceFd) => Ioctl(destinationFd, Ficlone, (void*)sourceFd);

    /// <summary>Atomically replaces <paramref name="newPath"/> by <paramref name="oldPath"/>; throws <see cref="LinuxFileException"/>.</summary>
    public static void Rename(string oldPath, string newPath)
    {
        EnsureLoaded();
        var from = NullTerminated(oldPath);
        var to = NullTerminated(newPath);
        fixed (byte* f = from)
        fixed (byte* t = to)
        {
            if (rename(f, t) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                throw new LinuxFileException(errno == 0 ? LibC.EIO : errno, "rename", oldPath);
            }
        }
    }

    /// <summary>Removes a file if it exists; failures are ignored (best-effort cleanup).</summary>
    public static void TryUnlink(string path)
    {
        var bytes = NullTerminated(path);
        fixed (byte* p = bytes)
        {
            _ = LibC.unlink(p);
        }
    }

    /// <summary>fsyncs a file by path; throws <see cref="LinuxFileException"/>.</summary>
    public static void SyncPath(string path, bool directory)
    {
        var fd = Open(path, (directory ? LibC.O_DIRECTORY : 0) | LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
        try
        {
            var errno = Sync(fd);
            if (errno != 0)
            {
                throw new LinuxFileException(errno, "fsync", path);
            }
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>fsyncs the directory that holds <paramref name="path"/>, making a create/rename in it durable.</summary>
    public static void SyncParentDirectory(string path) => SyncPath(ParentDirectory(path), directory: true);

    /// <summary>The directory holding <paramref name="path"/> (absolute).</summary>
    public static string ParentDirectory(string path)
        => Path.GetDirectoryName(Path.GetFullPath(path)) ?? "/";

    private static byte[] NullTerminated(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException("path contains a NUL character", nameof(path));
        }

        var bytes = new byte[Encoding.UTF8.GetByteCount(path) + 1];
        Encoding.UTF8.GetBytes(path, bytes);
        return bytes;
    }
}

/// <summary>
/// Owns a file descriptor. In-flight operations hold a reference (<see cref="SafeHandle.DangerousAddRef"/>),
/// so disposing while I/O runs defers the close until the last operation returns and the fd number
/// can never be reused under a running syscall.
/// </summary>
internal sealed class FileDescriptorHandle : SafeHandle
{
    public FileDescriptorHandle(int fd)
        : base(new IntPtr(-1), ownsHandle: true)
    {
        SetHandle(new IntPtr(fd));
    }

    public override bool IsInvalid => handle.ToInt64() < 0;

    protected override bool ReleaseHandle() => LibC.close((int)handle.ToInt64()) == 0;
}
