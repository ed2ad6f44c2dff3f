using Tmds.Linux;

namespace Slab.Store;

/// <summary>
/// Copy-on-write file clones (<c>ioctl(FICLONE)</c>): snapshots, clones and restores of replica
/// files. A clone shares every extent with its source, costs no data blocks, and diverges at 4 KiB
/// granularity as either file is written. Source and destination must be on the same reflink-capable
/// filesystem (XFS with <c>reflink=1</c>).
/// </summary>
/// <remarks>
/// Synchronous, control-plane calls (they block for the clone and the fsyncs). Thread-safe. Clone
/// a replica while it is quiescent, or accept a crash-consistent image of its completed writes: the
/// kernel flushes the source's dirty data before sharing extents.
/// </remarks>
public static class Reflink
{
    private const int FileMode = 0x180; // 0600

    /// <summary>
    /// Creates <paramref name="destinationPath"/> (it must not exist) as a reflink clone of
    /// <paramref name="sourcePath"/>, then fsyncs the clone and its directory, so the clone survives a
    /// crash once the call returns. On failure no partial destination is left behind.
    /// </summary>
    /// <exception cref="ReflinkNotSupportedException">The filesystem cannot reflink, or the paths are on different filesystems.</exception>
    /// <exception cref="LinuxFileException">Any other failure (EEXIST when the destination exists, ENOENT, ENOSPC ...).</exception>
    public static void CloneFile(string sourcePath, string destinationPath)
    {
        sourcePath = Path.GetFullPath(sourcePath);
        destinationPath = Path.GetFullPath(destinationPath);
        var source = LinuxFile.Open(sourcePath, LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
        try
        {
            var destination = LinuxFile.Open(destinationPath, LibC.O_WRONLY | LibC.O_CREAT | LibC.O_EXCL | LibC.O_CLOEXEC, FileMode);
            try
            {
                var errno = LinuxFile.Clone(destination, source);
                if (errno != 0)
                {
                    throw errno == LibC.EOPNOTSUPP || errno == LibC.EXDEV || errno == LibC.EINVAL || errno == LinuxFile.ENOTTY
                        ? new ReflinkNotSupportedException(errno, sourcePath, destinationPath)
                        : new LinuxFileException(errno, "ioctl(FICLONE)", destinationPath);
                }

                errno = LinuxFile.Sync(destination);
                if (errno != 0)
                {
                    throw new LinuxFileException(errno, "fsync", destinationPath);
                }

                LinuxFile.Close(destination);
                destination = -1;
                LinuxFile.SyncParentDirectory(destinationPath);
            }
            catch
            {
                if (destination >= 0)
                {
                    LinuxFile.Close(destination);
                }

                LinuxFile.TryUnlink(destinationPath);
                throw;
            }
        }
        finally
        {
            LinuxFile.Close(source);
        }
    }

    /// <summary>
    /// Replaces <paramref name="destinationPath"/> (which may or may not exist) by a reflink clone of
    /// <paramref name="sourcePath"/>, crash-safely: the clone is built and fsynced in a temporary file in
    /// the destination's directory, renamed over the destination, and the directory fsynced. After a
    /// crash the destination is either wholly old or wholly new. A process holding the old file open
    /// keeps seeing the old data; reopen replicas after restoring them.
    /// </summary>
    /// <exception cref="ReflinkNotSupportedException">The filesystem cannot reflink, or the paths are on different filesystems.</exception>
    /// <exception cref="LinuxFileException">Any other failure; the destination is then unchanged and no temporary file remains.</exception>
    public static void CloneOver(string sourcePath, string destinationPath)
    {
        destinationPath = Path.GetFullPath(destinationPath);
        var directory = LinuxFile.ParentDirectory(destinationPath);
        var temporary = Path.Combine(directory, $".{Path.GetFileName(destinationPath)}.{Guid.NewGuid():N}.clone-tmp");
        CloneFile(sourcePath, temporary);
        try
        {
            LinuxFile.Rename(temporary, destinationPath);
        }
        catch
        {
            LinuxFile.TryUnlink(temporary);
            throw;
        }

        LinuxFile.SyncPath(directory, directory: true);
    }
}
