namespace Slab.Cli.Parsing;

/// <summary>Parses <c>--label k=v,k2=v2</c> (the flag may also be repeated).</summary>
internal static class LabelParser
{
    /// <param name="allowEmptyValues">True where an empty value means "remove this label" (update).</param>
    public static Dictionary<string, string> Parse(IEnumerable<string> flagValues, bool allowEmptyValues)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var value in flagValues)
        {
            foreach (var pair in CommaList.Items(value))
            {
                var eq = pair.IndexOf('=', StringComparison.Ordinal);
                if (eq < 0)
                    throw new UsageException($"invalid label \"{pair}\": expected key=value");
                var key = pair[..eq].Trim();
                var v = pair[(eq + 1)..].Trim();
                if (key.Length == 0)
                    throw new UsageException($"invalid label \"{pair}\": the key is empty");
                if (v.Length == 0 && !allowEmptyValues)
                    throw new UsageException($"invalid label \"{pair}\": the value is empty");
                labels[key] = v;
            }
        }
        return labels;
    }
}
