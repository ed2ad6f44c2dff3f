namespace Slab.Cli.Output;

/// <summary>One column of a table built from objects: its header and how a row renders its cell.</summary>
internal sealed record Column<T>(string Header, Func<T, string> Cell);

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

    /// <summary>A table with a row per item, its cells rendered by <paramref name="columns"/>.</summary>
    public static Table From<T>(IEnumerable<T> items, IReadOnlyList<Column<T>> columns)
    {
        var table = new Table([.. columns.Select(c => c.Header)]);
        foreach (var item in items)
            table.AddRow([.. columns.Select(c => c.Cell(item))]);
        return table;
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
