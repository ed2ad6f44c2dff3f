using System.Text.Json;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>slabctl against a real slabd: the volume lifecycle and every kind of bad input.</summary>
public sealed class VolumeCliTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private SlabNode Node => fixture.Node;

    private static string Name(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    private async Task<string[]> VolumeNamesAsync()
        => (await Node.CliJsonAsync("volume", "list")).EnumerateArray().Select(v => v.GetProperty("name").GetString()!).ToArray();

    [Fact]
    public async Task Create_inspect_list_update_delete()
    {
        var name = Name("life");
        var created = await Node.CliOkAsync("volume", "create", name, "--size", "2", "--fs", "xfs", "--io_priority", "high", "--label", "app=web,tier=1");
        Assert.StartsWith("Volume successfully created: ", created, StringComparison.Ordinal);

        var inspect = await Node.CliJsonAsync("volume", "inspect", name);
        var volume = inspect.ValueKind == JsonValueKind.Array ? inspect[0] : inspect;
        Assert.Equal(created.Trim()["Volume successfully created: ".Length..], volume.GetProperty("id").GetString());
        Assert.Equal(name, volume.GetProperty("name").GetString());
        Assert.Equal((2L << 30).ToString(), volume.GetProperty("spec").GetProperty("sizeBytes").GetString());
        Assert.Equal("xfs", volume.GetProperty("spec").GetProperty("fs").GetString());
        Assert.Equal("IO_PRIORITY_HIGH", volume.GetProperty("spec").GetProperty("ioPriority").GetString());
        Assert.Equal("web", volume.GetProperty("spec").GetProperty("labels").GetProperty("app").GetString());

        var table = await Node.CliOkAsync("volume", "list");
        Assert.Contains(name, table, StringComparison.Ordinal);
        Assert.Contains("up - detached", table, StringComparison.Ordinal);

        var filtered = await Node.CliJsonAsync("volume", "list", "--label", "tier=1");
        Assert.Contains(filtered.EnumerateArray(), v => v.GetProperty("name").GetString() == name);

        await Node.CliOkAsync("volume", "update", name, "--size", "3");
        var grown = await Node.CliJsonAsync("volume", "inspect", name);
        grown = grown.ValueKind == JsonValueKind.Array ? grown[0] : grown;
        Assert.Equal((3L << 30).ToString(), grown.GetProperty("spec").GetProperty("sizeBytes").GetString());

        var shrink = await Node.CliAsync("volume", "update", name, "--size", "1");
        Assert.NotEqual(0, shrink.ExitCode);
        Assert.Contains("shrinking", shrink.Stderr, StringComparison.Ordinal);

        await Node.CliOkAsync("volume", "delete", name);
        Assert.DoesNotContain(name, await VolumeNamesAsync());
    }

    [Theory]
    [InlineData("invalid volume name", "create", "bad/name", "--size", "1")]
    [InlineData("invalid volume name", "create", "_underscore-first", "--size", "1")]
    [InlineData("invalid volume name", "create", "has@at", "--size", "1")]
    [InlineData("size", "create", "v-size-zero", "--size", "0")]
    [InlineData("size", "create", "v-size-neg", "--size", "-1")]
    [InlineData("size", "create", "v-size-abc", "--size", "abc")]
    [InlineData("size", "create", "v-size-huge", "--size", "100000")]
    [InlineData("size", "create", "v-size-missing")]
    [InlineData("repl", "create", "v-repl-9", "--size", "1", "--repl", "9")]
    [InlineData("--repl 2 needs a cluster", "create", "v-repl-2", "--size", "1", "--repl", "2")]
    [InlineData("can only be placed on this node", "create", "v-nodes", "--size", "1", "--nodes", "some-other-node")]
    [InlineData("fs", "create", "v-fs", "--size", "1", "--fs", "ntfs")]
    [InlineData("io_priority", "create", "v-prio", "--size", "1", "--io_priority", "urgent")]
    [InlineData("not found", "inspect", "no-such-volume")]
    [InlineData("not found", "delete", "no-such-volume")]
    [InlineData("not found", "update", "no-such-volume", "--size", "5")]
    [InlineData("not found", "snapshot", "create", "no-such-volume", "--name", "s")]
    [InlineData("not found", "clone", "no-such-volume", "--name", "c1")]
    public async Task Bad_input_fails_clearly_and_creates_nothing(string expected, params string[] args)
    {
        var before = await VolumeNamesAsync();
        var result = await Node.CliAsync(["volume", .. args]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains(expected, result.Stderr, StringComparison.OrdinalIgnoreCase);
        Assert.Empty(result.Stdout.Trim());
        Assert.Equal(before.Order(), (await VolumeNamesAsync()).Order());
    }

    [Fact]
    public async Task A_duplicate_name_is_refused()
    {
        var name = Name("dup");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        var again = await Node.CliAsync("volume", "create", name, "--size", "1");
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains("already exists", again.Stderr, StringComparison.Ordinal);
        Assert.Single(await VolumeNamesAsync(), n => n == name);
    }

    [Fact]
    public async Task Unknown_snapshots_are_refused()
    {
        var name = Name("snapless");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        var clone = await Node.CliAsync("volume", "clone", $"{name}@nope", "--name", Name("c"));
        Assert.NotEqual(0, clone.ExitCode);
        Assert.Contains("no snapshot 'nope'", clone.Stderr, StringComparison.Ordinal);
        var restore = await Node.CliAsync("volume", "restore", name, "--snapshot", "nope");
        Assert.NotEqual(0, restore.ExitCode);
        Assert.Contains("no snapshot 'nope'", restore.Stderr, StringComparison.Ordinal);
        var dup = await Node.CliAsync("volume", "snapshot", "create", name, "--name", "bad@name");
        Assert.NotEqual(0, dup.ExitCode);
    }

    [Fact]
    public async Task Overcommit_beyond_the_pool_is_refused()
    {
        // 16 GiB drive x overcommit 4 = about 64 GiB provisionable; ask for much more in one volume.
        var result = await Node.CliAsync("volume", "create", Name("big"), "--size", "200");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("cannot provision", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_and_pool_show_describe_the_node()
    {
        var status = await Node.CliOkAsync("status");
        Assert.Contains("test-node", status, StringComparison.Ordinal);
        var pools = await Node.CliJsonAsync("service", "pool", "show");
        var pool = pools.ValueKind == JsonValueKind.Array ? pools[0] : pools.GetProperty("pools")[0];
        Assert.Equal(Node.DrivePath, pool.GetProperty("drives")[0].GetProperty("path").GetString());
        Assert.True(long.Parse(pool.GetProperty("totalBytes").GetString()!) > 15L << 30);
    }

    [Fact]
    public async Task An_unreachable_daemon_is_reported()
    {
        var result = await HostCommand.RunAsync("dotnet", [SlabNode.SlabctlDll, "--endpoint", "unix:///tmp/no-such-slab.sock", "volume", "list"]);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cannot reach slabd", result.Stderr, StringComparison.Ordinal);
    }
}
