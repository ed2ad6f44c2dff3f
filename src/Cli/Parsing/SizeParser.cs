using Slab.Common;

namespace Slab.Cli.Parsing;

/// <summary>
/// Parses volume sizes given on the command line with the grammar slabd's Docker plugin shares
/// (<see cref="SizeSyntax"/>, linked from src/StorageNode/Common): a bare whole number is GiB
/// (pxctl's unit); M/G/T suffixes (with or without B/i/iB) pick another binary unit.
/// </summary>
internal static class SizeParser
{
    public const ulong MiB = SizeSyntax.MiB;
    public const ulong GiB = SizeSyntax.GiB;
    public const ulong TiB = SizeSyntax.TiB;
    public const ulong MaxBytes = SizeSyntax.MaxBytes;

    public const string HelpText = SizeSyntax.HelpText;

    /// <summary>Bytes for <paramref name="text"/>, or throws <see cref="UsageException"/> naming the problem.</summary>
    public static ulong Parse(string text, string flag = "--size")
    {
        if (TryParse(text, out var bytes, out var error))
            return bytes;
        throw new UsageException($"invalid size \"{text}\" for {flag}: {error}");
    }

    public static bool TryParse(string? text, out ulong bytes, out string error) => SizeSyntax.TryParse(text, out bytes, out error);
}
