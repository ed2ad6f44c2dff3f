namespace Slab.Cli.Parsing;

/// <summary>Flags that take lists: <c>--flag a,b</c>, repeatable, so <c>--flag a --flag b</c> is the same.</summary>
internal static class CommaList
{
    /// <summary>The items of one flag value, untrimmed (empty items included, for the caller to judge).</summary>
    public static string[] Items(string value) => value.Split(',');

    /// <summary>
    /// Names from every occurrence of a list flag, trimmed, in order. A blank item or a name given
    /// twice (compared as written: the server decides whether two names mean one thing) is a usage
    /// error naming the value it came from.
    /// </summary>
    public static List<string> Names(IEnumerable<string> flagValues, string flag)
    {
        var names = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var value in flagValues)
        {
            foreach (var item in Items(value))
            {
                var name = item.Trim();
                if (name.Length == 0)
                    throw new UsageException($"invalid value \"{value}\" for --{flag}: a name is empty");
                if (!seen.Add(name))
                    throw new UsageException($"invalid value \"{value}\" for --{flag}: \"{name}\" is given twice");
                names.Add(name);
            }
        }
        return names;
    }
}
