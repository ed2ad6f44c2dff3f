using System.Diagnostics.CodeAnalysis;

namespace Slab.Cli.Parsing;

/// <summary>Outcome of parsing a command line against the command tree.</summary>
internal sealed class ParseResult
{
    public required CommandNode Command { get; init; }

    public required IReadOnlyList<string> Arguments { get; init; }

    /// <summary>Values by long flag name; a switch that is set has the value "true".</summary>
    public required IReadOnlyDictionary<string, List<string>> Flags { get; init; }

    public bool HelpRequested { get; init; }

    /// <summary>What is wrong with the command line, or null.</summary>
    public string? Error { get; init; }

    public string? Value(string flag) =>
        Flags.TryGetValue(flag, out var values) && values.Count > 0 ? values[^1] : null;

    public IReadOnlyList<string> Values(string flag) =>
        Flags.TryGetValue(flag, out var values) ? values : [];

    public bool IsSet(string flag) => Value(flag) is { } v && v == "true";
}

/// <summary>
/// Parses argv against a command tree, cobra-style: words select subcommands (by name or alias)
/// until a leaf is reached, then become positional arguments; flags may appear anywhere after
/// the command that defines them; global flags anywhere; "--" ends flag parsing.
/// </summary>
internal static class Parser
{
    public static ParseResult Parse(CommandNode root, IReadOnlyList<string> args)
    {
        var node = root;
        var positionals = new List<string>();
        var flags = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        var help = false;
        string? error = null;
        var onlyPositionals = false;

        for (var i = 0; i < args.Count && error is null; i++)
        {
            var token = args[i];
            if (!onlyPositionals && token == "--")
            {
                onlyPositionals = true;
            }
            else if (!onlyPositionals && token.StartsWith("--", StringComparison.Ordinal))
            {
                error = ParseLong(node, args, ref i, flags);
            }
            else if (!onlyPositionals && token.Length > 1 && token[0] == '-')
            {
                error = ParseShort(node, args, ref i, flags);
            }
            else if (node.Children.Count > 0)
            {
                var child = node.FindChild(token);
                if (child is null)
                    error = $"unknown command \"{token}\" for \"{node.Path}\"";
                else
                    node = child;
            }
            else
            {
                positionals.Add(token);
            }

            if (flags.Remove(GlobalFlags.Help.Name))
                help = true;
        }

        // -h/--help wins over any other problem, wherever it appears.
        help |= args.Any(a => a is "-h" or "--help" || a.StartsWith("--help=", StringComparison.Ordinal));

        if (error is null && !help && node.Children.Count == 0)
            error = CheckArguments(node, positionals) ?? CheckRequiredFlags(node, flags);

        return new ParseResult
        {
            Command = node,
            Arguments = positionals,
            Flags = flags,
            HelpRequested = help,
            Error = help ? null : error,
        };
    }

    private static string? ParseLong(CommandNode node, IReadOnlyList<string> args, ref int i, Dictionary<string, List<string>> flags)
    {
        var token = args[i];
        var body = token[2..];
        string? value = null;
        var eq = body.IndexOf('=', StringComparison.Ordinal);
        if (eq >= 0)
        {
            value = body[(eq + 1)..];
            body = body[..eq];
        }
        if (!TryFind(node, f => f.Name == body, out var spec))
            return $"unknown flag: --{body}";
        if (spec.IsSwitch)
            return value is null ? Store(spec, "true", flags) : StoreSwitch(spec, value, flags);
        if (value is null)
        {
            if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                return $"flag needs an argument: --{spec.Name}";
            value = args[++i];
        }
        return Store(spec, value, flags);
    }

    private static string? ParseShort(CommandNode node, IReadOnlyList<string> args, ref int i, Dictionary<string, List<string>> flags)
    {
        var token = args[i];
        for (var j = 1; j < token.Length; j++)
        {
            var c = token[j];
            if (!TryFind(node, f => f.Short == c, out var spec))
                return $"unknown shorthand flag: '{c}' in {token}";
            if (spec.IsSwitch)
            {
                var error = Store(spec, "true", flags);
                if (error is not null)
                    return error;
                continue;
            }
            // A value flag takes the rest of the token (-s10, -s=10) or the next argument.
            var rest = token[(j + 1)..];
            if (rest.StartsWith('='))
                rest = rest[1..];
            if (rest.Length > 0)
                return Store(spec, rest, flags);
            if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                return $"flag needs an argument: '{c}' in {token}";
            return Store(spec, args[++i], flags);
        }
        return null;
    }

    private static string? StoreSwitch(FlagSpec spec, string value, Dictionary<string, List<string>> flags)
    {
        if (bool.TryParse(value, out var on))
        {
            if (on)
                return Store(spec, "true", flags);
            flags.Remove(spec.Name);
            return null;
        }
        return $"invalid value \"{value}\" for --{spec.Name}: must be true or false";
    }

    private static string? Store(FlagSpec spec, string value, Dictionary<string, List<string>> flags)
    {
        if (value.Length == 0)
            return $"empty value for --{spec.Name}";
        if (spec.Choices is { } choices)
        {
            var match = choices.FirstOrDefault(c => string.Equals(c, value, StringComparison.OrdinalIgnoreCase));
            if (match is null)
                return $"invalid value \"{value}\" for --{spec.Name}: must be one of {string.Join(", ", choices)}";
            value = match;
        }
        if (!flags.TryGetValue(spec.Name, out var list))
            flags[spec.Name] = list = [];
        if (!spec.Repeatable)
            list.Clear();
        list.Add(value);
        return null;
    }

    private static bool TryFind(CommandNode node, Func<FlagSpec, bool> match, [NotNullWhen(true)] out FlagSpec? spec)
    {
        spec = node.Flags.FirstOrDefault(match) ?? GlobalFlags.All.FirstOrDefault(match);
        return spec is not null;
    }

    private static string? CheckArguments(CommandNode node, List<string> positionals)
    {
        var index = 0;
        foreach (var arg in node.Args)
        {
            if (index >= positionals.Count)
                return arg.Required ? $"missing argument {arg.Name}" : null;
            if (arg.Variadic)
            {
                var empty = positionals.Skip(index).Any(p => p.Trim().Length == 0);
                return empty ? $"{arg.Name} must not be empty" : null;
            }
            if (positionals[index].Trim().Length == 0)
                return $"{arg.Name} must not be empty";
            index++;
        }
        return index < positionals.Count ? $"unexpected argument \"{positionals[index]}\"" : null;
    }

    private static string? CheckRequiredFlags(CommandNode node, Dictionary<string, List<string>> flags)
    {
        foreach (var flag in node.Flags)
        {
            if (flag.Required && !flags.ContainsKey(flag.Name))
                return $"required flag --{flag.Name} not set";
        }
        if (node.ExactlyOneOf.Count > 0)
        {
            var given = node.ExactlyOneOf.Count(flags.ContainsKey);
            var names = string.Join(" or ", node.ExactlyOneOf.Select(f => "--" + f));
            if (given == 0)
                return $"one of {names} is required";
            if (given > 1)
                return $"only one of {names} may be given";
        }
        return null;
    }
}
