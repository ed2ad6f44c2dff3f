using System.Runtime.InteropServices;
using Tmds.Linux;

namespace Slab.Store;

/// <summary>One extent of a file as the filesystem maps it (FS_IOC_FIEMAP).</summary>
/// <param name="Logical">Offset in the file, bytes.</param>
/// <param name="Physical">Offset on the device, bytes.</param>
/// <param name="Length">Bytes.</param>
/// <param name="Comparable">False when the physical address says nothing about the data (delayed allocation, inline, encoded, unknown): such a range always counts as differing.</param>
public readonly record struct PhysicalExtent(long Logical, long Physical, long Length, bool Comparable);

/// <summary>
/// Physical extent maps of files, to tell which ranges of two reflinked files (a snapshot and an
/// older one of the same replica) still share their blocks: where both map the same physical
/// blocks the data is the same, because a write to either one would have moved its range (XFS
/// reflinks are copy-on-write).
/// </summary>
public static unsafe class PhysicalExtents
{
    /// <summary>_IOWR('f', 11, struct fiemap).</summary>
    private const nuint FsIocFiemap = 0xC020660B;

    private const uint ExtentLast = 0x1;

    /// <summary>UNKNOWN | DELALLOC | ENCODED | DATA_ENCRYPTED | NOT_ALIGNED | DATA_INLINE | DATA_TAIL.</summary>
    private const uint ExtentNotComparable = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400;

    private const int Batch = 512;

    [StructLayout(LayoutKind.Sequential)]
    private struct FiemapHeader
    {
        public ulong Start;
        public ulong Length;
        public uint Flags;
        public uint MappedExtents;
        public uint ExtentCount;
        public uint Reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct FiemapExtent
    {
        public ulong Logical;
        public ulong Physical;
        public ulong Length;
        public ulong Reserved0;
        public ulong Reserved1;
        public uint Flags;
        public uint Reserved2;
        public uint Reserved3;
        public uint Reserved4;
    }

    /// <summary>The extents of [0, <paramref name="size"/>) of the file at <paramref name="path"/>, in file order (holes are the gaps).</summary>
    /// <exception cref="LinuxFileException">The file cannot be opened or mapped (EOPNOTSUPP on filesystems without FIEMAP).</exception>
    public static List<PhysicalExtent> Map(string path, long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        var fd = LinuxFile.Open(path, LibC.O_RDONLY | LibC.O_CLOEXEC, 0);
        var buffer = NativeMemory.AllocZeroed((nuint)(sizeof(FiemapHeader) + (Batch * sizeof(FiemapExtent))));
        try
        {
            var result = new List<PhysicalExtent>();
            var header = (FiemapHeader*)buffer;
            var extents = (FiemapExtent*)(header + 1);
            long start = 0;
            while (start < size)
            {
                *header = new FiemapHeader { Start = (ulong)start, Length = (ulong)(size - start), ExtentCount = Batch };
                if (LinuxFile.Ioctl(fd, FsIocFiemap, buffer) is var errno and not 0)
                {
                    throw new LinuxFileException(errno, "ioctl(FS_IOC_FIEMAP)", path);
                }

                var count = (int)header->MappedExtents;
                if (count == 0)
                {
                    break;
                }

                var last = false;
                for (var i = 0; i < count; i++)
                {
                    var e = extents[i];
                    result.Add(new PhysicalExtent((long)e.Logical, (long)e.Physical, (long)e.Length, (e.Flags & ExtentNotComparable) == 0));
                    start = (long)(e.Logical + e.Length);
                    last |= (e.Flags & ExtentLast) != 0;
                }

                if (last)
                {
                    break;
                }
            }

            return result;
        }
        finally
        {
            NativeMemory.Free(buffer);
            LinuxFile.Close(fd);
        }
    }

    /// <summary>
    /// The ranges of [0, <paramref name="size"/>) where the file mapped by <paramref name="newer"/>
    /// may hold other data than the one mapped by <paramref name="older"/>: everything except the
    /// ranges that both leave as holes or both map, comparably, to the same physical blocks.
    /// Adjacent ranges are merged; in file order.
    /// </summary>
    public static List<(long Offset, long Length)> Differing(IReadOnlyList<PhysicalExtent> older, IReadOnlyList<PhysicalExtent> newer, long size)
    {
        var result = new List<(long Offset, long Length)>();
        var (i, j) = (0, 0);
        long position = 0;
        while (position < size)
        {
            // Skip extents that end at or before the position; find what each file has here and until where.
            while (i < older.Count && older[i].Logical + older[i].Length <= position)
            {
                i++;
            }

            while (j < newer.Count && newer[j].Logical + newer[j].Length <= position)
            {
                j++;
            }

            var (olderMapped, olderEnd) = StateAt(older, i, position, size);
            var (newerMapped, newerEnd) = StateAt(newer, j, position, size);
            var end = Math.Min(olderEnd, newerEnd);
            bool same;
            if (!olderMapped || !newerMapped)
            {
                same = !olderMapped && !newerMapped;
            }
            else
            {
                var (a, b) = (older[i], newer[j]);
                same = a.Comparable && b.Comparable && a.Physical + (position - a.Logical) == b.Physical + (position - b.Logical);
            }

            if (!same)
            {
                if (result.Count > 0 && result[^1].Offset + result[^1].Length == position)
                {
                    result[^1] = (result[^1].Offset, end - result[^1].Offset);
                }
                else
                {
                    result.Add((position, end - position));
                }
            }

            position = end;
        }

        return result;
    }

    /// <summary>Whether <paramref name="extents"/>[<paramref name="index"/>] covers <paramref name="position"/>, and where that state ends.</summary>
    private static (bool Mapped, long End) StateAt(IReadOnlyList<PhysicalExtent> extents, int index, long position, long size)
    {
        if (index >= extents.Count)
        {
            return (false, size);
        }

        var extent = extents[index];
        return extent.Logical <= position
            ? (true, Math.Min(extent.Logical + extent.Length, size))
            : (false, Math.Min(extent.Logical, size));
    }
}
