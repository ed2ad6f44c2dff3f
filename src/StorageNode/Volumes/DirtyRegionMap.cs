using System.Buffers.Binary;
using System.Numerics;

namespace Slab.Volumes;

/// <summary>
/// The regions of a volume that one replica misses (DRBD's bitmap): a bit per
/// <see cref="RegionBytes"/> of the volume, set while the replica is out for every write it did not
/// get, cleared region by region as a resync copies them.
/// </summary>
/// <remarks>
/// Threading: <see cref="Mark"/>, <see cref="TryTake"/> and <see cref="IsSet"/> are lock-free and
/// may run concurrently. <see cref="Generation"/> rises with every mark that set a new bit, so a
/// writer can tell whether a save that began after its mark has covered it.
/// Encoding (<see cref="Encode"/>): "SLDM", format u16, reserved u16, region size u32, region count
/// u64, then the bits as little-endian u64 words.
/// </remarks>
public sealed class DirtyRegionMap
{
    /// <summary>Default region: 1 MiB (a 1 TiB volume needs 128 KiB of bits).</summary>
    public const int DefaultRegionBytes = 1 << 20;

    private const uint Magic = 0x4D444C53; // "SLDM"
    private const ushort Format = 1;
    private const int HeaderBytes = 20;

    private readonly ulong[] _words;
    private long _generation;

    /// <param name="volumeBytes">The volume's size; regions cover it (the last may be short).</param>
    /// <param name="regionBytes">A power of two, 4 KiB..1 GiB.</param>
    public DirtyRegionMap(long volumeBytes, int regionBytes = DefaultRegionBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(volumeBytes);
        if (regionBytes < 4096 || regionBytes > 1 << 30 || !BitOperations.IsPow2(regionBytes))
        {
            throw new ArgumentOutOfRangeException(nameof(regionBytes), "region size must be a power of two between 4 KiB and 1 GiB");
        }

        RegionBytes = regionBytes;
        RegionCount = (volumeBytes + regionBytes - 1) / regionBytes;
        _words = new ulong[(RegionCount + 63) / 64];
    }

    public int RegionBytes { get; }

    public long RegionCount { get; }

    /// <summary>Rises whenever a mark sets a bit that was clear.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>Regions set now (a count taken bit by bit; concurrent changes may or may not be seen).</summary>
    public long DirtyCount
    {
        get
        {
            long count = 0;
            for (var i = 0; i < _words.Length; i++)
            {
                count += BitOperations.PopCount(Volatile.Read(ref _words[i]));
            }

            return count;
        }
    }

    /// <summary>Sets every region; used when nothing is known about what a replica misses (a full copy).</summary>
    public void MarkAll()
    {
        for (long region = 0; region < RegionCount; region++)
        {
            SetBit(region);
        }

        Interlocked.Increment(ref _generation);
    }

    /// <summary>Sets the regions that [offset, offset + length) touches. True when one of them was clear.</summary>
    public bool Mark(long offset, long length)
    {
        if (length <= 0 || RegionCount == 0)
        {
            return false;
        }

        var first = offset / RegionBytes;
        var last = Math.Min((offset + length - 1) / RegionBytes, RegionCount - 1);
        var changed = false;
        for (var region = first; region <= last; region++)
        {
            changed |= SetBit(region);
        }

        if (changed)
        {
            Interlocked.Increment(ref _generation);
        }

        return changed;
    }

    public bool IsSet(long region)
    {
        var bit = 1UL << (int)(region & 63);
        return (Volatile.Read(ref _words[region >> 6]) & bit) != 0;
    }

    /// <summary>Clears <paramref name="region"/>; true when it was set (the caller then owns copying it).</summary>
    public bool TryTake(long region)
    {
        var bit = 1UL << (int)(region & 63);
        return (Interlocked.And(ref _words[region >> 6], ~bit) & bit) != 0;
    }

    /// <summary>The first set region at or after <paramref name="from"/>, wrapping around; -1 when none is set.</summary>
    public long NextSet(long from)
    {
        for (long i = 0; i < RegionCount; i++)
        {
            var region = (from + i) % RegionCount;
            if ((region & 63) == 0 && Volatile.Read(ref _words[region >> 6]) == 0)
            {
                i += Math.Min(63, RegionCount - 1 - region);
                continue;
            }

            if (IsSet(region))
            {
                return region;
            }
        }

        return -1;
    }

    public byte[] Encode()
    {
        var bytes = new byte[HeaderBytes + (_words.Length * 8)];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), Format);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)RegionBytes);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(12), RegionCount);
        for (var i = 0; i < _words.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(HeaderBytes + (i * 8)), Volatile.Read(ref _words[i]));
        }

        return bytes;
    }

    /// <summary>Sets <paramref name="region"/> in an encoding made by <see cref="Encode"/> (a region being copied, which the map no longer holds).</summary>
    public static void MarkEncoded(Span<byte> encoded, long region)
    {
        var word = encoded.Slice(HeaderBytes + (int)((region >> 6) * 8), 8);
        BinaryPrimitives.WriteUInt64LittleEndian(word, BinaryPrimitives.ReadUInt64LittleEndian(word) | (1UL << (int)(region & 63)));
    }

    /// <summary>Decodes a saved map for a volume of <paramref name="volumeBytes"/>; null when it is not one (wrong magic, format or size).</summary>
    public static DirtyRegionMap? Decode(ReadOnlySpan<byte> bytes, long volumeBytes)
    {
        if (bytes.Length < HeaderBytes || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]) != Format)
        {
            return null;
        }

        var regionBytes = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        var savedCount = BinaryPrimitives.ReadInt64LittleEndian(bytes[12..]);
        DirtyRegionMap map;
        try
        {
            map = new DirtyRegionMap(volumeBytes, regionBytes);
        }
        catch (ArgumentOutOfRangeException)
        {
            return null;
        }

        if (savedCount < 0 || savedCount > map.RegionCount || bytes.Length < HeaderBytes + (((savedCount + 63) / 64) * 8))
        {
            return null; // saved for a larger volume: volumes never shrink, so it is not this one's
        }

        for (var i = 0; i < (savedCount + 63) / 64; i++)
        {
            map._words[i] = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(HeaderBytes + (i * 8))..]);
        }

        // A grow after the save: the new regions were never written while it was out, but nothing
        // proves it; copying them costs little.
        for (long region = savedCount; region < map.RegionCount; region++)
        {
            map.SetBit(region);
        }

        return map;
    }

    private bool SetBit(long region)
    {
        var bit = 1UL << (int)(region & 63);
        return (Interlocked.Or(ref _words[region >> 6], bit) & bit) == 0;
    }
}
