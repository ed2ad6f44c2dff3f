namespace Slab.Cli.Output;

/// <summary>
/// A plain-text table: a header row and left-aligned columns separated by at least two spaces,
/// no trailing whitespace (like pxctl's tabwriter output).
/// </summary>
internal sealed class Table
{
    private readonly string[] _headers;
    private readonly List<string[]> _rows = [];

    public Table(params string[] headers)
    {
        _headers = headers;
    }

    public Table AddRow(params string[] cells)
    {
        if (cells.Length != _headers.Length)
            throw new ArgumentException($"expected {_headers.Length} cells, got {cells.Length}", nameof(cells));
        _rows.Add(cells);
        return this;
    }

    /// <param name="indent">Prefix for every line (used inside status blocks).</param>
    public void Write(TextWriter output, string indent = "")
    {
        var widths = new int[_headers.Length];
        foreach (var row in _rows.Prepend(_headers))
        {
            for (var i = 0; i < row.Length; i++)
                widths[i] = Math.Max(widths[i], row[i].Length);
        }
        foreach (var row in _rows.Prepend(_headers))
        {
            var line = indent;
            for (var i = 0; i < row.Length; i++)
                line += i == row.Length - 1 ? row[i] : row[i].PadRight(widths[i] + 2);
            output.WriteLine(line.TrimEnd());
        }
    }
}
