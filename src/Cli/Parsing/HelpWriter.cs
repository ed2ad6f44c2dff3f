namespace Slab.Cli.Parsing;

/// <summary>Usage text for a command, cobra-style (what pxctl prints).</summary>
internal static class HelpWriter
{
    public static void Write(CommandNode node, TextWriter output)
    {
        output.WriteLine(node.Summary);
        if (node.Details is { } details)
        {
            output.WriteLine();
            output.WriteLine(details);
        }
        output.WriteLine();
        output.WriteLine("Usage:");
        output.WriteLine($"  {node.UsageLine}");

        if (node.Aliases.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("Aliases:");
            output.WriteLine($"  {string.Join(", ", new[] { node.Name }.Concat(node.Aliases))}");
        }

        if (node.Children.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("Available Commands:");
            var width = node.Children.Max(c => c.Name.Length) + 3;
            foreach (var child in node.Children)
                output.WriteLine($"  {child.Name.PadRight(width)}{child.Summary}");
        }

        if (node.Flags.Count > 0)
        {
            output.WriteLine();
            output.WriteLine("Flags:");
            WriteFlags(node.Flags, output);
        }

        output.WriteLine();
        output.WriteLine("Global Flags:");
        WriteFlags(GlobalFlags.All, output);

        if (node.Children.Count > 0)
        {
            output.WriteLine();
            output.WriteLine($"Use \"{node.Path} [command] --help\" for more information about a command.");
        }
    }

    /// <summary>The two-line hint that follows every usage error.</summary>
    public static void WriteUsageHint(CommandNode node, TextWriter output)
    {
        output.WriteLine($"Usage: {node.UsageLine}");
        output.WriteLine($"Run '{node.Path} --help' for more information.");
    }

    private static void WriteFlags(IReadOnlyList<FlagSpec> flags, TextWriter output)
    {
        static string Left(FlagSpec f)
        {
            var names = f.Short is { } s ? $"-{s}, --{f.Name}" : $"    --{f.Name}";
            return f.ValueName is null ? names : $"{names} {f.ValueName}";
        }

        var width = flags.Max(f => Left(f).Length) + 3;
        foreach (var flag in flags)
        {
            var text = flag.Description;
            if (flag.Required)
                text += " (required)";
            if (flag.Repeatable)
                text += " (repeatable)";
            output.WriteLine($"  {Left(flag).PadRight(width)}{text}");
        }
    }
}
