using Google.Protobuf;

namespace Slab.Cli.Output;

/// <summary>
/// JSON output for scripts: protobuf's canonical JSON mapping (lowerCamelCase names, 64-bit
/// integers as strings, enums by name) with default values included, so every field is present.
/// </summary>
internal static class Json
{
    private static readonly JsonFormatter _formatter =
        new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true).WithIndentation("  "));

    public static void Write(TextWriter output, IMessage message) => output.WriteLine(_formatter.Format(message));

    /// <summary>Writes a JSON array of the messages (also when there are none or one).</summary>
    public static void WriteArray(TextWriter output, IEnumerable<IMessage> messages)
    {
        var items = messages.Select(m => "  " + _formatter.Format(m).ReplaceLineEndings("\n  ")).ToList();
        output.WriteLine(items.Count == 0 ? "[]" : "[\n" + string.Join(",\n", items) + "\n]");
    }
}
