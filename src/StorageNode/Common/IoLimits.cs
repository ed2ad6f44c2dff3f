using System.Globalization;

namespace Slab.Common;

/// <summary>
/// A volume's I/O limits (QoS, pxctl's <c>--max_iops</c> / <c>--max_bandwidth</c>): operations per
/// second and bytes per second, for reads and writes separately. 0 is unlimited. Immutable.
/// </summary>
/// <remarks>Writes, trims and write-zeroes count against the write IOPS limit; only writes carry
/// bytes against the write bandwidth limit (a trim moves no data). Flushes are never limited.</remarks>
public sealed record IoLimits
{
    /// <summary>No limit at all.</summary>
    public static IoLimits None { get; } = new();

    /// <summary>Read operations per second; 0 = unlimited.</summary>
    public long ReadIops { get; init; }

    /// <summary>Write operations (writes, trims, write-zeroes) per second; 0 = unlimited.</summary>
    public long WriteIops { get; init; }

    /// <summary>Read bytes per second; 0 = unlimited.</summary>
    public long ReadBytesPerSecond { get; init; }

    /// <summary>Written bytes per second; 0 = unlimited.</summary>
    public long WriteBytesPerSecond { get; init; }

    /// <summary>True when nothing is limited.</summary>
    public bool IsUnlimited => ReadIops == 0 && WriteIops == 0 && ReadBytesPerSecond == 0 && WriteBytesPerSecond == 0;
}

/// <summary>
/// The one grammar for I/O limits people type, shared by slabctl (<c>--max_iops R,W</c>,
/// <c>--max_bandwidth R,W</c>), the Docker plugin and slab-csi's parameters (compiled into each):
/// two whole numbers, read then write, separated by a comma; one number sets both; 0 is unlimited.
/// Bandwidth is in MB/s (10^6 bytes per second, fio's MB/s), as in pxctl.
/// </summary>
internal static class IoLimitSyntax
{
    /// <summary>One MB/s, the unit of <c>--max_bandwidth</c>: 10^6 bytes per second.</summary>
    public const long BytesPerMegabyte = 1_000_000;

    /// <summary>The largest IOPS limit accepted (a billion per second is beyond any device).</summary>
    public const long MaxIops = 1_000_000_000;

    /// <summary>The largest bandwidth limit accepted, in MB/s (1 PB/s).</summary>
    public const long MaxMegabytesPerSecond = 1_000_000_000;

    public const string IopsHelp = "read,write operations per second, e.g. 1000,500; one number sets both; 0 is unlimited";

    public const string BandwidthHelp = "read,write MB/s (10^6 bytes), e.g. 100,50; one number sets both; 0 is unlimited";

    /// <summary>Parses <c>R,W</c> or <c>N</c> into two limits no larger than <paramref name="maximum"/>; false with <paramref name="error"/> naming the problem.</summary>
    public static bool TryParsePair(string? text, long maximum, out long read, out long write, out string error)
    {
        read = write = 0;
        var parts = (text ?? "").Split(',');
        if (parts.Length > 2)
        {
            error = $"'{text}' has {parts.Length} values; give read,write (two numbers) or one number for both";
            return false;
        }

        if (!TryParseOne(parts[0], maximum, out read, out error))
        {
            return false;
        }

        if (parts.Length == 1)
        {
            write = read;
            return true;
        }

        return TryParseOne(parts[1], maximum, out write, out error);
    }

    /// <summary>Checks limits that came over the API (any caller): none negative or over the maxima.</summary>
    /// <exception cref="SlabException">InvalidArgument naming the field.</exception>
    public static IoLimits Validate(IoLimits limits)
        => TryValidate(limits, out var problem) ? limits : throw new SlabException(SlabErrorCode.InvalidArgument, problem);

    /// <summary>False with <paramref name="problem"/> when a limit is negative or over its maximum.</summary>
    public static bool TryValidate(IoLimits limits, out string problem)
    {
        problem = Check(limits.ReadIops, MaxIops, "max read IOPS")
                  ?? Check(limits.WriteIops, MaxIops, "max write IOPS")
                  ?? Check(limits.ReadBytesPerSecond, MaxMegabytesPerSecond * BytesPerMegabyte, "max read bandwidth (bytes/s)")
                  ?? Check(limits.WriteBytesPerSecond, MaxMegabytesPerSecond * BytesPerMegabyte, "max write bandwidth (bytes/s)")
                  ?? "";
        return problem.Length == 0;

        static string? Check(long value, long maximum, string name)
            => value < 0 || value > maximum
                ? $"{name} {value} is out of range (0 = unlimited, at most {maximum.ToString("N0", CultureInfo.InvariantCulture)})"
                : null;
    }

    /// <summary>"1000 read, 500 write IOPS; 100 read MB/s, unlimited write" style text, or "none".</summary>
    public static string Describe(long readIops, long writeIops, long readBytesPerSecond, long writeBytesPerSecond)
    {
        if (readIops == 0 && writeIops == 0 && readBytesPerSecond == 0 && writeBytesPerSecond == 0)
        {
            return "none";
        }

        var iops = readIops == 0 && writeIops == 0 ? "IOPS unlimited" : $"IOPS {Limit(readIops)} read, {Limit(writeIops)} write";
        var bandwidth = readBytesPerSecond == 0 && writeBytesPerSecond == 0
            ? "bandwidth unlimited"
            : $"MB/s {Limit(readBytesPerSecond / BytesPerMegabyte)} read, {Limit(writeBytesPerSecond / BytesPerMegabyte)} write";
        return $"{iops}; {bandwidth}";

        static string Limit(long value) => value == 0 ? "unlimited" : value.ToString("N0", CultureInfo.InvariantCulture);
    }

    private static bool TryParseOne(string text, long maximum, out long value, out string error)
    {
        var s = text.Trim();
        if (s.Length == 0)
        {
            value = 0;
            error = "a value is empty; give read,write (e.g. 1000,500) or one number";
            return false;
        }

        if (!long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value))
        {
            error = s.StartsWith('-') ? $"'{s}' is negative; 0 means unlimited" : $"'{s}' is not a whole number";
            return false;
        }

        if (value > maximum)
        {
            error = $"{value.ToString("N0", CultureInfo.InvariantCulture)} is over the limit of {maximum.ToString("N0", CultureInfo.InvariantCulture)}";
            return false;
        }

        error = "";
        return true;
    }
}
