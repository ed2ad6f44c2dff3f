namespace Slab.Cli.Parsing;

/// <summary>Runs a command once its arguments have been parsed; returns the process exit code.</summary>
internal delegate Task<int> CommandHandler(CommandContext context);

/// <summary>A flag a command accepts: <c>--name value</c>, <c>--name=value</c>, <c>-s value</c>.</summary>
internal sealed class FlagSpec
{
    /// <summary>Long name without the leading dashes.</summary>
    public required string Name { get; init; }

    public char? Short { get; init; }

    /// <summary>Placeholder shown in help for the value; null makes this a boolean switch.</summary>
    public string? ValueName { get; init; }

    public required string Description { get; init; }

    public bool Required { get; init; }

    /// <summary>Values of every occurrence are kept (labels); otherwise the last occurrence wins.</summary>
    public bool Repeatable { get; init; }

    /// <summary>When set, the value must be one of these (compared case-insensitively).</summary>
    public IReadOnlyList<string>? Choices { get; init; }

    public bool IsSwitch => ValueName is null;
}

/// <summary>A positional argument of a leaf command.</summary>
internal sealed record ArgSpec(string Name, bool Required = true, bool Variadic = false);

/// <summary>
/// One node of the command tree: either a group (has <see cref="Children"/>) or a leaf with a
/// <see cref="Handler"/>. Groups take no positional arguments.
/// </summary>
internal sealed class CommandNode
{
    private readonly List<CommandNode> _children = [];

    public CommandNode(string name, string summary, params string[] aliases)
    {
        Name = name;
        Summary = summary;
        Aliases = aliases;
    }

    public string Name { get; }

    public string Summary { get; }

    public IReadOnlyList<string> Aliases { get; }

    /// <summary>Longer help text shown under the summary, or null.</summary>
    public string? Details { get; init; }

    public IReadOnlyList<ArgSpec> Args { get; init; } = [];

    public IReadOnlyList<FlagSpec> Flags { get; init; } = [];

    /// <summary>Long names of flags of which exactly one must be given (<c>--enter|--exit</c>); empty when none.</summary>
    public IReadOnlyList<string> ExactlyOneOf { get; init; } = [];

    public CommandHandler? Handler { get; init; }

    public CommandNode? Parent { get; private set; }

    public IReadOnlyList<CommandNode> Children => _children;

    /// <summary>"slabctl volume create".</summary>
    public string Path => Parent is null ? Name : $"{Parent.Path} {Name}";

    public CommandNode Add(params CommandNode[] children)
    {
        foreach (var child in children)
        {
            child.Parent = this;
            _children.Add(child);
        }
        return this;
    }

    public CommandNode? FindChild(string token)
    {
        foreach (var child in _children)
        {
            if (child.Name == token || child.Aliases.Contains(token))
                return child;
        }
        return null;
    }

    /// <summary>"slabctl volume create NAME [flags]".</summary>
    public string UsageLine
    {
        get
        {
            if (_children.Count > 0)
                return $"{Path} [command]";
            var parts = new List<string> { Path };
            foreach (var arg in Args)
            {
                var text = arg.Variadic ? arg.Name + "..." : arg.Name;
                parts.Add(arg.Required ? text : $"[{text}]");
            }
            if (ExactlyOneOf.Count > 0)
                parts.Add(string.Join('|', ExactlyOneOf.Select(f => "--" + f)));
            foreach (var flag in Flags.Where(f => f.Required))
                parts.Add($"--{flag.Name} {flag.ValueName}");
            parts.Add("[flags]");
            return string.Join(' ', parts);
        }
    }
}
