using Google.Protobuf;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary>
/// How every command prints its result: the API message as JSON with <c>-j</c>, otherwise the
/// human rendering. Each returns the success exit code, so a handler ends with <c>return ctx.Print(...)</c>.
/// </summary>
internal static class CommandOutput
{
    public static int Print(this CommandContext ctx, IMessage result, Action<TextWriter> human)
    {
        if (ctx.Json)
            Json.Write(ctx.Out, result);
        else
            human(ctx.Out);
        return CliApp.Success;
    }

    /// <summary>A one-line confirmation for people.</summary>
    public static int Print(this CommandContext ctx, IMessage result, string line) =>
        ctx.Print(result, o => o.WriteLine(line));

    /// <summary>Lists are JSON arrays, also with none or one item.</summary>
    public static int PrintList(this CommandContext ctx, IEnumerable<IMessage> items, Action<TextWriter> human)
    {
        if (ctx.Json)
            Json.WriteArray(ctx.Out, items);
        else
            human(ctx.Out);
        return CliApp.Success;
    }
}
