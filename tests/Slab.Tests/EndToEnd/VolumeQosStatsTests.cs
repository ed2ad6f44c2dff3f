using System.Text.Json;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>QoS limits and live I/O statistics against a real slabd: slabctl flags, inspect, updates online, counters that move with NBD I/O.</summary>
public sealed class VolumeQosStatsTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private SlabNode Node => fixture.Node;

    private static string Name(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    private static JsonElement One(JsonElement e) => e.ValueKind == JsonValueKind.Array ? e[0] : e;

    private static long Field(JsonElement e, string name) => e.TryGetProperty(name, out var v) ? long.Parse(v.GetString()!) : 0;

    [Fact]
    public async Task Limits_are_set_at_create_shown_and_changed_online_field_by_field()
    {
        var name = Name("qos");
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--max_iops", "1000,500", "--max_bandwidth", "0,20");
        var limits = One(await Node.CliJsonAsync("volume", "inspect", name)).GetProperty("spec").GetProperty("limits");
        Assert.Equal(1000, Field(limits, "maxReadIops"));
        Assert.Equal(500, Field(limits, "maxWriteIops"));
        Assert.Equal(0, Field(limits, "maxReadBytesPerSecond"));
        Assert.Equal(20_000_000, Field(limits, "maxWriteBytesPerSecond"));
        Assert.Contains("QoS            :  IOPS 1,000 read, 500 write; MB/s unlimited read, 20 write", await Node.CliOkAsync("volume", "inspect", name), StringComparison.Ordinal);

        // Open it (an NBD client) so that the change reaches a live controller.
        using var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, name);
        await Node.CliOkAsync("volume", "update", name, "--max_iops", "0");
        var stats = await Node.CliJsonAsync("volume", "stats", name);
        Assert.True(stats.GetProperty("active").GetBoolean());
        Assert.Equal(0, Field(stats.GetProperty("limits"), "maxWriteIops"));
        Assert.Equal(20_000_000, Field(stats.GetProperty("limits"), "maxWriteBytesPerSecond")); // --max_bandwidth not given: kept

        await Node.CliOkAsync("volume", "update", name, "--max_bandwidth", "0");
        Assert.Contains("QoS            :  none", await Node.CliOkAsync("volume", "inspect", name), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stats_move_with_io_and_a_limited_volume_records_its_wait()
    {
        var name = Name("stats");
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--max_iops", "0,5");
        var idle = await Node.CliJsonAsync("volume", "stats", name);
        Assert.False(idle.TryGetProperty("active", out var active) && active.GetBoolean());
        Assert.Contains("is not open on any node", await Node.CliOkAsync("volume", "stats", name), StringComparison.Ordinal);

        using var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, name);
        var block = new byte[4096];
        Random.Shared.NextBytes(block);
        for (var i = 0; i < 6; i++)
        {
            Assert.Equal(0u, await client.WriteAsync(i * 4096L, block));
        }

        Assert.Equal(0u, await client.ReadAsync(0, new byte[8192]));
        Assert.Equal(0u, await client.FlushAsync());
        Assert.Equal(0u, await client.TrimAsync(1 << 20, 65536));

        var stats = await Node.CliJsonAsync("volume", "stats", name);
        Assert.True(stats.GetProperty("active").GetBoolean());
        Assert.Equal(6, Field(stats.GetProperty("writes"), "operations"));
        Assert.Equal(6 * 4096, Field(stats.GetProperty("writes"), "bytes"));
        Assert.Equal(1, Field(stats.GetProperty("reads"), "operations"));
        Assert.Equal(8192, Field(stats.GetProperty("reads"), "bytes"));
        Assert.Equal(1, Field(stats.GetProperty("flushes"), "operations"));
        Assert.Equal(1, Field(stats.GetProperty("discards"), "operations"));
        Assert.Equal(0, Field(stats, "inFlight"));
        // 5 write ops/s with a second of burst: of 7 write-class requests sent one after another, the last one (the trim) waited.
        Assert.True(Field(stats, "throttledUs") > 0, stats.ToString());
        Assert.True(Field(stats, "usedBytes") >= 6 * 4096);

        var inspect = await Node.CliOkAsync("volume", "inspect", name);
        Assert.Contains("Writes         :  6 ops, 24 KiB, 0 errors", inspect, StringComparison.Ordinal);

        var live = await Node.CliOkAsync("volume", "stats", name, "--interval", "1", "--count", "2");
        var lines = live.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length); // header line, column names, two rows
        Assert.StartsWith("TS", lines[1], StringComparison.Ordinal);
        Assert.Contains("24 KiB", lines[2], StringComparison.Ordinal); // since the open
        Assert.Contains("0 B", lines[3], StringComparison.Ordinal);    // nothing in the last second
    }

    [Theory]
    [InlineData("--max_iops", "create", "NAME", "--size", "1", "--max_iops", "abc")]
    [InlineData("3 values", "create", "NAME", "--size", "1", "--max_iops", "1,2,3")]
    [InlineData("negative", "create", "NAME", "--size", "1", "--max_bandwidth", "-5")]
    [InlineData("over the limit", "create", "NAME", "--size", "1", "--max_bandwidth", "9999999999")]
    [InlineData("not found", "stats", "no-such-volume")]
    [InlineData("--interval", "stats", "no-such-volume", "--interval", "0")]
    [InlineData("nothing to update", "update", "no-such-volume")]
    public async Task Bad_qos_and_stats_input_fails_clearly(string expected, params string[] args)
    {
        var name = Name("bad");
        var result = await Node.CliAsync(["volume", .. args.Select(a => a == "NAME" ? name : a)]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(expected, result.Stderr, StringComparison.OrdinalIgnoreCase);
        var list = await Node.CliOkAsync("volume", "list");
        Assert.DoesNotContain(name, list, StringComparison.Ordinal);
    }
}
