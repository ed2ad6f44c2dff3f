using System.Globalization;
using Slab.Api.V1;

namespace Slab.Cli.Output;

/// <summary>Storage pools in one table: this node's (status) or another node's (cluster inspect NODE).</summary>
internal static class PoolViews
{
    private static readonly Column<Pool>[] _columns =
    [
        new("POOL", p => p.Id),
        new("IO_PRIORITY", p => Formats.IoPriority(p.IoPriority)),
        new("CAPACITY", p => Sizes.Format(p.TotalBytes)),
        new("USED", p => Sizes.Format(p.UsedBytes)),
        new("PROVISIONED", p => Sizes.Format(p.ProvisionedBytes)),
        new("DRIVES", p => p.Drives.Count.ToString(CultureInfo.InvariantCulture)),
    ];

    /// <summary>"Local Storage Pools: 1 pool" (<paramref name="title"/>), then the table unless there are none.</summary>
    public static void WriteTable(IReadOnlyCollection<Pool> pools, string title, TextWriter o, string indent)
    {
        o.WriteLine($"{indent}{title}: {pools.Count} pool{(pools.Count == 1 ? "" : "s")}");
        if (pools.Count > 0)
            Table.From(pools, _columns).Write(o, indent);
    }
}
