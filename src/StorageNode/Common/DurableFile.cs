using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Tmds.Linux;

namespace Slab.Common;

/// <summary>
/// Crash-safe replacement of small files: write a temp file, fsync it, rename it over the target,
/// fsync the directory. After a crash at any instant the target holds the old or the new content,
/// never a mix; leftover temp files (<c>*.tmp-*</c>) are garbage and removed by <see cref="RemoveLeftovers"/>.
/// </summary>
public static class DurableFile
{
    private const string TempMarker = ".tmp-";

    public static void WriteJson<T>(string path, T value, JsonTypeInfo<T> typeInfo)
        => WriteAllBytes(path, JsonSerializer.SerializeToUtf8Bytes(value, typeInfo));

    public static T? ReadJson<T>(string path, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), typeInfo);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> content)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var temp = path + TempMarker + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        SyncDirectory(directory);
    }

    /// <summary>Makes a directory's entries (creates, renames, deletes) durable.</summary>
    public static unsafe void SyncDirectory(string directory)
    {
        int fd;
        fixed (byte* p = System.Text.Encoding.UTF8.GetBytes(directory + "\0"))
        {
            fd = LibC.open(p, LibC.O_RDONLY | LibC.O_DIRECTORY | LibC.O_CLOEXEC);
        }

        if (fd < 0)
        {
            throw new IOException($"cannot open directory {directory} to sync it (errno {Tmds.Linux.LibC.errno})");
        }

        try
        {
            if (LibC.fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory {directory} failed (errno {LibC.errno})");
            }
        }
        finally
        {
            _ = LibC.close(fd);
        }
    }

    /// <summary>Creates a directory (and parents) and makes its entry durable.</summary>
    public static void CreateDirectory(string directory)
    {
        var full = Path.GetFullPath(directory);
        if (Directory.Exists(full))
        {
            return;
        }

        Directory.CreateDirectory(full);
        SyncDirectory(Path.GetDirectoryName(full)!);
    }

    /// <summary>Deletes temp files left by a crash in the middle of <see cref="WriteAllBytes"/>.</summary>
    public static void RemoveLeftovers(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return;
        }

        foreach (var file in Directory.EnumerateFiles(directory, "*" + TempMarker + "*"))
        {
            File.Delete(file);
        }
    }
}
