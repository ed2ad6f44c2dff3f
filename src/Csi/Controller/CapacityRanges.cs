using Csi.V1;

namespace Slab.Csi.Controller;

/// <summary>The spec's capacity-range rules for Slab's 4 KiB-granular volumes.</summary>
internal static class CapacityRanges
{
    /// <summary>A volume's size is a multiple of this many bytes.</summary>
    public const long Granularity = 4096;

    /// <summary>slabd's largest volume (its StoreOptions' default): bigger is OUT_OF_RANGE, not slabd's INVALID_ARGUMENT.</summary>
    public const long MaximumBytes = 64L << 40;

    /// <summary>The size when the CO names none (PX's default).</summary>
    public const long DefaultBytes = 1L << 30;

    /// <summary>
    /// The size to create: the required bytes rounded up to the granularity, at least
    /// <paramref name="minimumBytes"/> (a clone's source), else the default capped by the limit.
    /// OUT_OF_RANGE when no multiple of the granularity lies in [required, limit]; INVALID_ARGUMENT
    /// for negative bounds.
    /// </summary>
    public static long Resolve(CapacityRange? range, long minimumBytes = 0)
    {
        var required = range?.RequiredBytes ?? 0;
        var limit = range?.LimitBytes ?? 0;
        if (required < 0 || limit < 0)
            throw CsiException.InvalidArgument("capacity_range: required_bytes and limit_bytes must not be negative");
        if (limit > 0 && required > limit)
            throw CsiException.InvalidArgument($"capacity_range: required_bytes {required} exceeds limit_bytes {limit}");

        long size;
        if (required > 0)
        {
            size = RoundUp(Math.Max(required, minimumBytes));
        }
        else if (minimumBytes > 0)
        {
            size = RoundUp(minimumBytes);
        }
        else
        {
            size = limit > 0 ? Math.Min(DefaultBytes, limit / Granularity * Granularity) : DefaultBytes;
        }

        if (size > MaximumBytes)
            throw CsiException.OutOfRange($"capacity_range asks for {size} bytes; a Slab volume holds at most 64 TiB");
        if (size == 0 || (limit > 0 && size > limit))
        {
            throw CsiException.OutOfRange(minimumBytes > 0 && limit > 0 && RoundUp(minimumBytes) > limit
                ? $"capacity_range: limit_bytes {limit} is smaller than the source's {minimumBytes} bytes"
                : $"capacity_range [{required}, {(limit > 0 ? limit : "any")}] holds no multiple of {Granularity} bytes (Slab volume sizes are 4 KiB multiples)");
        }

        return size;
    }

    /// <summary>Whether an existing volume of <paramref name="sizeBytes"/> satisfies the range (idempotent create).</summary>
    public static bool Admits(CapacityRange? range, long sizeBytes) =>
        range is null
        || ((range.RequiredBytes <= 0 || sizeBytes >= range.RequiredBytes) && (range.LimitBytes <= 0 || sizeBytes <= range.LimitBytes));

    private static long RoundUp(long bytes) => bytes > long.MaxValue - Granularity ? long.MaxValue / Granularity * Granularity : (bytes + Granularity - 1) / Granularity * Granularity;
}
