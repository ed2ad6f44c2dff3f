using Slab.Common;

namespace Slab.Common;

/// <summary>
/// Rules for volume, snapshot and label names. A name is 1-128 characters of letters, digits, '.',
/// '_' and '-', starting with a letter or digit: safe in export names, paths and URLs.
/// "VOL@SNAP" names a snapshot, so '@' is never part of a name.
/// </summary>
public static class VolumeNames
{
    public const int MaximumLength = 128;

    public static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaximumLength || !char.IsAsciiLetterOrDigit(name[0]))
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('.' or '_' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    /// <exception cref="SlabException">InvalidArgument, naming what is wrong.</exception>
    public static void Validate(string? name, string what)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"{what} name is empty");
        }

        if (!IsValid(name))
        {
            throw new SlabException(
                SlabErrorCode.InvalidArgument,
                $"invalid {what} name '{name}': use 1-{MaximumLength} letters, digits, '.', '_' or '-', starting with a letter or digit");
        }
    }

    /// <summary>Splits "VOL@SNAP"; the snapshot part is null for a plain volume name.</summary>
    public static (string Volume, string? Snapshot) Split(string reference)
    {
        var at = reference.IndexOf('@', StringComparison.Ordinal);
        return at < 0 ? (reference, null) : (reference[..at], reference[(at + 1)..]);
    }

    /// <summary>Label keys: 1-63 of letters, digits, '.', '_', '-', '/'; values: up to 255 printable characters.</summary>
    public static void ValidateLabel(string key, string value)
    {
        if (key.Length is 0 or > 63 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/'))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"invalid label key '{key}': use 1-63 letters, digits, '.', '_', '-' or '/'");
        }

        if (value.Length > 255 || value.Any(char.IsControl))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"invalid value for label '{key}': at most 255 printable characters");
        }
    }
}
