using System.Globalization;

namespace Slab.Cli.Output;

/// <summary>Human-readable byte counts in binary units (B, KiB, MiB, GiB, TiB, PiB).</summary>
internal static class Sizes
{
    private static readonly string[] _units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

    /// <summary>"0 B", "512 B", "1.5 KiB", "10 GiB", "1.25 TiB": at most two decimals, trailing zeros dropped.</summary>
    public static string Format(ulong bytes)
    {
        var unit = 0;
        var value = (double)bytes;
        while (value >= 1024 && unit < _units.Length - 1)
        {
            value /= 1024;
            unit++;
        }
        // Round first so 1023.999 KiB shows as "1 MiB", not "1024 KiB".
        var rounded = Math.Round(value, 2, MidpointRounding.AwayFromZero);
        if (rounded >= 1024 && unit < _units.Length - 1)
        {
            rounded = Math.Round(rounded / 1024, 2, MidpointRounding.AwayFromZero);
            unit++;
        }
        return rounded.ToString("0.##", CultureInfo.InvariantCulture) + " " + _units[unit];
    }
}
