using System.Text;
using Slab.Common;
using Tmds.Linux;

namespace Slab.Store;

/// <summary>Path-level helpers for sparse replica files (control plane; not on the data path).</summary>
public static class SparseFiles
{
    /// <summary>Bytes the file occupies on its filesystem (st_blocks * 512).</summary>
    public static unsafe long AllocatedBytes(string path)
    {
        stat st;
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            if (LibC.stat(p, &st) != 0)
            {
                return 0;
            }
        }

        return st.st_blocks * 512L;
    }

    /// <summary>Extends the file to <paramref name="sizeBytes"/> (never shrinks) and makes it durable.</summary>
    public static void Grow(string path, long sizeBytes)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
        if (RandomAccess.GetLength(handle) < sizeBytes)
        {
            RandomAccess.SetLength(handle, sizeBytes);
        }

        if (LibC.fsync((int)handle.DangerousGetHandle()) != 0)
        {
            throw new IOException($"fsync of {path} failed (errno {LibC.errno})");
        }

        DurableFile.SyncDirectory(Path.GetDirectoryName(path)!);
    }
}
