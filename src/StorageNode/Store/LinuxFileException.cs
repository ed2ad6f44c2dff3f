namespace Slab.Store;

/// <summary>
/// A Linux file syscall failed outside the block data path (create, open, clone, rename, fsync of a
/// directory). <see cref="Errno"/> is the raw errno; classify by it, never by the message.
/// </summary>
public class LinuxFileException : IOException
{
    public LinuxFileException(int errno, string operation, string path)
        : this(errno, operation, path, $"{operation} '{path}' failed: {LinuxFile.Describe(errno)} (errno {errno})")
    {
    }

    protected LinuxFileException(int errno, string operation, string path, string message)
        : base(message)
    {
        Errno = errno;
        Operation = operation;
        Path = path;
        HResult = errno;
    }

    /// <summary>The errno reported by the kernel (e.g. 17 EEXIST, 2 ENOENT, 28 ENOSPC).</summary>
    public int Errno { get; }

    /// <summary>The syscall or step that failed ("open", "ioctl(FICLONE)", "rename" ...).</summary>
    public string Operation { get; }

    /// <summary>The file the operation was about.</summary>
    public string Path { get; }
}

/// <summary>
/// The filesystem cannot reflink between these files: it lacks reflink support (not XFS with
/// <c>reflink=1</c>, btrfs, ...) or source and destination are on different filesystems.
/// </summary>
public sealed class ReflinkNotSupportedException : LinuxFileException
{
    public ReflinkNotSupportedException(int errno, string sourcePath, string destinationPath)
        : base(
            errno,
            "ioctl(FICLONE)",
            destinationPath,
            $"cannot reflink '{sourcePath}' to '{destinationPath}': the filesystem does not support reflink "
            + $"or the files are on different filesystems ({LinuxFile.Describe(errno)}, errno {errno})")
    {
        SourcePath = sourcePath;
    }

    public string SourcePath { get; }
}
