using System.Globalization;

namespace Slab.Common;

/// <summary>
/// The one grammar for volume sizes people type, shared by slabctl (<c>--size</c>) and the Docker
/// plugin (<c>--opt size=</c>, the inline spec); compiled into both (slabctl links this file). A
/// bare whole number is GiB (pxctl's unit); a suffix picks another binary unit: M/MB/Mi/MiB,
/// G/GB/Gi/GiB, T/TB/Ti/TiB (case-insensitive; "G" and "GB" mean GiB, as in pxctl). Sizes are whole
/// numbers of their unit, at least 1 MiB and at most 64 TiB.
/// </summary>
internal static class SizeSyntax
{
    public const ulong MiB = 1UL << 20;
    public const ulong GiB = 1UL << 30;
    public const ulong TiB = 1UL << 40;
    public const ulong MaxBytes = 64 * TiB;

    public const string HelpText = "whole GiB (10) or with a unit: 512M, 10G, 10GiB, 1T; at most 64T";

    /// <summary>Bytes for <paramref name="text"/>; false with <paramref name="error"/> naming the problem (no exception).</summary>
    public static bool TryParse(string? text, out ulong bytes, out string error)
    {
        bytes = 0;
        var s = (text ?? "").Trim();
        if (s.Length == 0)
        {
            error = "a size is required";
            return false;
        }

        var digits = 0;
        while (digits < s.Length && char.IsAsciiDigit(s[digits]))
        {
            digits++;
        }

        var unitText = s[digits..].Trim();
        if (digits == 0)
        {
            error = s[0] == '-' ? "must be positive" : $"must be a whole number of GiB or have a unit ({HelpText})";
            return false;
        }

        if (unitText.StartsWith('.') || unitText.StartsWith(','))
        {
            error = "fractional sizes are not supported; use a smaller unit (e.g. 1536M for 1.5G)";
            return false;
        }

        ulong unit;
        switch (unitText.ToUpperInvariant())
        {
            case "":
            case "G":
            case "GB":
            case "GI":
            case "GIB":
                unit = GiB;
                break;
            case "M":
            case "MB":
            case "MI":
            case "MIB":
                unit = MiB;
                break;
            case "T":
            case "TB":
            case "TI":
            case "TIB":
                unit = TiB;
                break;
            default:
                error = $"unknown unit \"{unitText}\" (use M, G or T)";
                return false;
        }

        if (!ulong.TryParse(s.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out var count)
            || count > MaxBytes / unit)
        {
            error = "too large: the maximum is 64 TiB";
            return false;
        }

        if (count == 0)
        {
            error = "must be positive";
            return false;
        }

        bytes = count * unit;
        error = "";
        return true;
    }
}
