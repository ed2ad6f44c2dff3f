namespace Slab.Cli.Output;

/// <summary>
/// pxctl's "Key : Value" blocks: one title line, then indented lines with the keys padded to
/// one width so the colons line up.
/// </summary>
internal sealed class KeyValueBlock
{
    private readonly List<(string Key, string? Value)> _lines = [];

    /// <summary>A key with a value; a null value writes the key alone (a sub-heading).</summary>
    public KeyValueBlock Add(string key, string? value)
    {
        _lines.Add((key, value));
        return this;
    }

    /// <summary>A line written verbatim (after the indent), for nested lists.</summary>
    public KeyValueBlock Raw(string line)
    {
        _lines.Add((line, null));
        return this;
    }

    public void Write(TextWriter output, string indent = "\t")
    {
        var width = _lines.Where(l => l.Value is not null).Select(l => l.Key.Length).DefaultIfEmpty(0).Max();
        foreach (var (key, value) in _lines)
            output.WriteLine(value is null ? indent + key : $"{indent}{key.PadRight(width)}  :  {value}");
    }
}
