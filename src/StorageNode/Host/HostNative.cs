using System.Runtime.InteropServices;

namespace Slab.Host;

/// <summary>The few syscalls the host layer needs that no tool offers: loop status ioctls, exclusive opens, pidfds.</summary>
internal static partial class HostNative
{
    private const int O_RDONLY = 0;
    private const int O_RDWR = 2;
    private const int O_EXCL = 0x80;
    private const int O_CLOEXEC = 0x80000;

    private const int EINTR = 4;
    private const int ESRCH = 3;
    private const int EBUSY = 16;
    private const nuint LOOP_SET_STATUS64 = 0x4C04;
    private const nuint LOOP_GET_STATUS64 = 0x4C05;
    private const long SYS_pidfd_open = 434; // the same on x86-64 and arm64 (new syscalls share numbers)
    private const short POLLIN = 1;
    private const int SIGKILL = 9;

    /// <summary>struct loop_info64 from linux/loop.h (232 bytes on every 64-bit and 32-bit ABI).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct LoopInfo64
    {
        public ulong Device;
        public ulong Inode;
        public ulong RDevice;
        public ulong Offset;
        public ulong SizeLimit;
        public uint Number;
        public uint EncryptType;
        public uint EncryptKeySize;
        public uint Flags;
        public fixed byte FileName[64];
        public fixed byte CryptName[64];
        public fixed byte EncryptKey[32];
        public fixed ulong Init[2];
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int Ioctl(int fd, nuint request, void* argument);

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, int pid, uint flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int Poll(PollFd* fds, nuint count, int timeoutMilliseconds);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "strerror")]
    private static partial nint StrError(int errno);

    private static string Describe(int errno) => Marshal.PtrToStringUTF8(StrError(errno)) ?? $"errno {errno}";

    /// <summary>Sets the live loop device's size limit (LOOP_GET_STATUS64, change lo_sizelimit, LOOP_SET_STATUS64).</summary>
    /// <exception cref="HostAttachException"><see cref="HostAttachError.DeviceFailed"/>.</exception>
    public static unsafe void SetLoopSizeLimit(string loopDevice, long sizeLimitBytes)
    {
        if (sizeof(LoopInfo64) != 232)
        {
            throw new PlatformNotSupportedException($"struct loop_info64 is {sizeof(LoopInfo64)} bytes here, expected 232");
        }

        var fd = Open(loopDevice, O_RDWR | O_CLOEXEC);
        if (fd < 0)
        {
            throw DeviceFailed($"open {loopDevice}", Marshal.GetLastPInvokeError());
        }

        try
        {
            LoopInfo64 info;
            if (Ioctl(fd, LOOP_GET_STATUS64, &info) != 0)
            {
                throw DeviceFailed($"LOOP_GET_STATUS64 on {loopDevice}", Marshal.GetLastPInvokeError());
            }

            info.SizeLimit = (ulong)sizeLimitBytes;
            int error;
            do
            {
                error = Ioctl(fd, LOOP_SET_STATUS64, &info) == 0 ? 0 : Marshal.GetLastPInvokeError();
            }
            while (error == EINTR);

            if (error != 0)
            {
                throw DeviceFailed($"LOOP_SET_STATUS64 (size limit {sizeLimitBytes}) on {loopDevice}", error);
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>
    /// Whether the block device is held exclusively (mounted in any mount namespace, or claimed by
    /// device-mapper, md, another O_EXCL opener). False when the device node does not exist.
    /// </summary>
    public static bool IsHeldExclusively(string blockDevice)
    {
        var fd = Open(blockDevice, O_RDONLY | O_EXCL | O_CLOEXEC);
        if (fd >= 0)
        {
            _ = Close(fd);
            return false;
        }

        return Marshal.GetLastPInvokeError() == EBUSY;
    }

    /// <summary>
    /// Waits until process <paramref name="pid"/> has exited (a zombie counts as exited), using a
    /// pidfd, which the kernel makes readable on exit. True when it exited (or never existed).
    /// </summary>
    public static async Task<bool> WaitForProcessExitAsync(int pid, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var fd = (int)Syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            return errno == ESRCH ? true : throw DeviceFailed($"pidfd_open({pid})", errno);
        }

        try
        {
            var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var remaining = deadline - Environment.TickCount64;
                if (remaining <= 0)
                {
                    return false;
                }

                // Block in poll() in slices so cancellation is observed; the wake-up is the exit itself.
                var slice = (int)Math.Min(remaining, 250);
                var ready = await Task.Run(() => PollReadable(fd, slice), CancellationToken.None);
                if (ready)
                {
                    return true;
                }
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>fsyncs a directory so a rename in it is durable.</summary>
    public static void FsyncDirectory(string directory)
    {
        var fd = Open(directory, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
        {
            throw DeviceFailed($"open {directory}", Marshal.GetLastPInvokeError());
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw DeviceFailed($"fsync {directory}", Marshal.GetLastPInvokeError());
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>Whether the process exists and is not a zombie.</summary>
    public static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] != 'Z' && stat[close + 2] != 'X';
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The process's argv, or empty when it is gone.</summary>
    public static IReadOnlyList<string> CommandLine(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cmdline").Split('\0', StringSplitOptions.RemoveEmptyEntries);
        }
        catch (IOException)
        {
            return [];
        }
        catch (UnauthorizedAccessException)
        {
            return [];
        }
    }

    /// <summary>Sends SIGKILL; true when sent, false when the process was already gone.</summary>
    public static bool KillHard(int pid) => Kill(pid, SIGKILL) == 0;

    private static unsafe bool PollReadable(int fd, int timeoutMilliseconds)
    {
        var pollFd = new PollFd { Fd = fd, Events = POLLIN };
        var result = Poll(&pollFd, 1, timeoutMilliseconds);
        return result > 0;
    }

    private static HostAttachException DeviceFailed(string what, int errno) =>
        new(HostAttachError.DeviceFailed, $"{what} failed: {Describe(errno)} (errno {errno})");
}
