using System.Collections.Immutable;

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
            throw new SlabException(SlabErrorCode.InvalidArgument, Invalid(name, what));
        }
    }

    /// <summary>The message for a <paramref name="what"/> ("volume", "snapshot", "node") name that is not <see cref="IsValid"/>.</summary>
    public static string Invalid(string? name, string what)
        => $"invalid {what} name '{name}': use 1-{MaximumLength} letters, digits, '.', '_' or '-', starting with a letter or digit";

    /// <summary>Splits "VOL@SNAP"; the snapshot part is null for a plain volume name.</summary>
    public static (string Volume, string? Snapshot) Split(string reference)
    {
        var at = reference.IndexOf('@', StringComparison.Ordinal);
        return at < 0 ? (reference, null) : (reference[..at], reference[(at + 1)..]);
    }

    /// <summary>Label keys: 1-63 of letters, digits, '.', '_', '-', '/'; values: up to 255 printable characters.</summary>
    /// <exception cref="SlabException">The key or value breaks the rules (InvalidArgument).</exception>
    public static void ValidateLabel(string key, string value)
    {
        if (LabelProblem(key, value) is { } problem)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, problem);
        }
    }

    /// <summary>What is wrong with a label (see <see cref="ValidateLabel"/>), or null when nothing is.</summary>
    public static string? LabelProblem(string key, string value)
    {
        if (key.Length is 0 or > 63 || !key.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/'))
        {
            return $"invalid label key '{key}': use 1-63 letters, digits, '.', '_', '-' or '/'";
        }

        return value.Length > 255 || value.Any(char.IsControl) ? $"invalid value for label '{key}': at most 255 printable characters" : null;
    }

    /// <summary>Validates <paramref name="labels"/> and returns them ordered by ordinal key; empty for none.</summary>
    /// <exception cref="SlabException">A key or value breaks <see cref="ValidateLabel"/> (InvalidArgument).</exception>
    public static ImmutableSortedDictionary<string, string> ValidateLabels(IReadOnlyDictionary<string, string>? labels)
    {
        var builder = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in labels ?? ImmutableDictionary<string, string>.Empty)
        {
            ValidateLabel(key, value);
            builder[key] = value;
        }

        return builder.ToImmutable();
    }

    /// <summary>
    /// A label update applied to <paramref name="current"/>: a key with an empty value is removed,
    /// every other key is validated and set. The result is ordered by ordinal key.
    /// </summary>
    /// <exception cref="SlabException">A key or value breaks <see cref="ValidateLabel"/> (InvalidArgument).</exception>
    public static ImmutableSortedDictionary<string, string> MergeLabels(ImmutableSortedDictionary<string, string> current, IReadOnlyDictionary<string, string> changes)
        => TryMergeLabels(current, changes, out var merged, out var problem) ? merged : throw new SlabException(SlabErrorCode.InvalidArgument, problem!);

    /// <summary><see cref="MergeLabels"/> without throwing: false with the first problem found.</summary>
    public static bool TryMergeLabels(
        ImmutableSortedDictionary<string, string> current, IReadOnlyDictionary<string, string> changes, out ImmutableSortedDictionary<string, string> merged, out string? problem)
    {
        var builder = current.WithComparers(StringComparer.Ordinal).ToBuilder();
        foreach (var (key, value) in changes)
        {
            if (value.Length == 0)
            {
                builder.Remove(key);
            }
            else if (LabelProblem(key, value) is { } bad)
            {
                (merged, problem) = (current, bad);
                return false;
            }
            else
            {
                builder[key] = value;
            }
        }

        (merged, problem) = (builder.ToImmutable(), null);
        return true;
    }
}
