using System.Net;
using System.Net.Sockets;
using Slab.Tests.EndToEnd;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.Metrics;

/// <summary>/metrics of a real slabd (on a free port), scraped over HTTP and read by Prometheus' own parser.</summary>
public sealed class MetricsTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private const int Block = 4096;

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    private SlabNode Node => fixture.Node;

    private string Url => Node.MetricsUrl ?? throw new InvalidOperationException($"slabd logged no metrics address:\n{Node.Log}");

    private static string Name(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    private async Task<string> VolumeIdAsync(string name)
        => LocalCluster.First(await Node.CliJsonAsync("volume", "inspect", name)).GetProperty("id").GetString()!;

    [Fact]
    public async Task Volume_figures_move_with_nbd_io_and_vanish_when_it_closes()
    {
        var name = Name("metrics");
        await Node.CliOkAsync("volume", "create", name, "--size", "1", "--max_iops", "100000,50000");
        var id = await VolumeIdAsync(name);
        (string, string)[] volume = [("volume", name), ("volume_id", id)];
        (string, string)[] writes = [.. volume, ("op", "write")];

        using (var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, name))
        {
            var before = await PrometheusScrape.FetchAsync(Url);
            Assert.True(before.Value("slab_node_nbd_connections", ("listener", "public")) >= 1);
            var writesBefore = before.Value("slab_volume_operations_total", writes);
            var bytesBefore = before.Value("slab_volume_bytes_total", writes);
            var countBefore = before.Value("slab_volume_operation_duration_seconds_count", writes);

            const int N = 25;
            var data = new byte[Block];
            Random.Shared.NextBytes(data);
            // Scrapes during the I/O (concurrently with each other too) neither block it nor fail.
            var concurrent = Task.WhenAll(Enumerable.Range(0, 3).Select(_ => Task.Run(() => PrometheusScrape.FetchAsync(Url))));
            for (var i = 0; i < N; i++)
            {
                Assert.Equal(0u, await client.WriteAsync(i * (long)Block, data));
            }

            await concurrent;

            Assert.Equal(0u, await client.ReadAsync(0, new byte[2 * Block]));
            Assert.Equal(0u, await client.FlushAsync());

            var after = await PrometheusScrape.FetchAsync(Url);
            Assert.Equal(N, after.Value("slab_volume_operations_total", writes) - writesBefore);
            Assert.Equal(N * Block, after.Value("slab_volume_bytes_total", writes) - bytesBefore);
            Assert.Equal(N, after.Value("slab_volume_operation_duration_seconds_count", writes) - countBefore);
            Assert.Equal(N, after.Value("slab_volume_operation_duration_seconds_bucket", [.. writes, ("le", "+Inf")]) - countBefore);
            Assert.True(after.Value("slab_volume_operation_duration_seconds_sum", writes) > 0);
            Assert.Equal(2 * Block, after.Value("slab_volume_bytes_total", [.. volume, ("op", "read")]));
            Assert.Equal(1, after.Value("slab_volume_operations_total", [.. volume, ("op", "flush")]));
            Assert.Empty(after.Find("slab_volume_bytes_total", [.. volume, ("op", "flush")]));
            Assert.Equal(0, after.Value("slab_volume_errors_total", writes));
            Assert.Equal(0, after.Value("slab_volume_in_flight", volume));
            Assert.Equal(0, after.Value("slab_volume_qos_throttled_seconds_total", volume));
            Assert.Equal(100_000, after.Value("slab_volume_qos_limit", [.. volume, ("kind", "read_iops")]));
            Assert.Equal(50_000, after.Value("slab_volume_qos_limit", [.. volume, ("kind", "write_iops")]));
            Assert.Empty(after.Find("slab_volume_qos_limit", [.. volume, ("kind", "write_bytes_per_second")]));
            Assert.Equal("counter", after.TypeOf("slab_volume_operations"));
            Assert.Equal("counter", after.TypeOf("slab_volume_bytes"));
            Assert.Equal("histogram", after.TypeOf("slab_volume_operation_duration_seconds"));
            Assert.Equal("gauge", after.TypeOf("slab_volume_in_flight"));
        }

        // The last connection gone, the volume closes and its series go with it.
        await Poll.UntilAsync(
            async () => (await PrometheusScrape.FetchAsync(Url)).Samples.All(s => !s.Has(("volume_id", id))),
            TimeSpan.FromSeconds(30),
            $"the series of closed volume {name} to be removed");
    }

    [Fact]
    public async Task A_volume_opened_again_between_scrapes_counts_from_zero()
    {
        var name = Name("reopen");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        var id = await VolumeIdAsync(name);
        (string, string)[] writes = [("volume_id", id), ("op", "write")];
        var data = new byte[Block];
        using (var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, name))
        {
            for (var i = 0; i < 3; i++)
            {
                Assert.Equal(0u, await client.WriteAsync(i * (long)Block, data));
            }

            Assert.Equal(3, (await PrometheusScrape.FetchAsync(Url)).Value("slab_volume_operations_total", writes));
        }

        // Closed and opened again with no scrape in between: a new controller, whose counters began at 0.
        await Poll.UntilAsync(
            async () => !((await Node.CliJsonAsync("volume", "stats", name)).TryGetProperty("active", out var active) && active.GetBoolean()),
            TimeSpan.FromSeconds(30),
            $"volume {name} to close");
        using var again = await TestNbdClient.ConnectAsync(Node.NbdSocket, name);
        Assert.Equal(0u, await again.WriteAsync(0, data));
        var scrape = await PrometheusScrape.FetchAsync(Url);
        Assert.Equal(1, scrape.Value("slab_volume_operations_total", writes));
        Assert.Equal(Block, scrape.Value("slab_volume_bytes_total", writes));
        Assert.Equal(1, scrape.Value("slab_volume_operation_duration_seconds_count", writes));
    }

    [Fact]
    public async Task Node_pool_and_alert_figures_are_sane()
    {
        var name = Name("pool");
        await Node.CliOkAsync("volume", "create", name, "--size", "2");
        var scrape = await PrometheusScrape.FetchAsync(Url);

        Assert.Equal(1, scrape.Value("slab_node_info", ("node", "test-node")));
        var info = Assert.Single(scrape.Find("slab_node_info"));
        Assert.Matches("^[0-9a-f]{32}$", info.Labels["node_id"]);
        Assert.NotEmpty(info.Labels["version"]);

        var pool = Assert.Single(scrape.Find("slab_pool_capacity_bytes"));
        (string, string) poolLabel = ("pool", pool.Labels["pool"]);
        var capacity = pool.Value;
        var used = scrape.Value("slab_pool_used_bytes", poolLabel);
        Assert.InRange(capacity, Node.DriveBytes * 0.9, Node.DriveBytes);
        Assert.InRange(used, 1, capacity);
        Assert.True(scrape.Value("slab_pool_provisioned_bytes", poolLabel) >= 2L << 30);
        var drive = Assert.Single(scrape.Find("slab_drive_capacity_bytes", poolLabel));
        Assert.Equal(Node.DrivePath, drive.Labels["path"]);
        Assert.Equal(capacity, drive.Value);
        Assert.Equal(used, scrape.Value("slab_drive_used_bytes", poolLabel));
        Assert.Equal(1, scrape.Value("slab_drive_online", poolLabel));

        // A nearly empty pool: no alert of either kind, both shown at 0; a single node has no cluster series.
        Assert.Equal(0, scrape.Value("slab_alerts", ("type", "pool_full"), ("severity", "critical")));
        Assert.Equal(0, scrape.Value("slab_alerts", ("type", "pool_near_full"), ("severity", "warning")));
        Assert.DoesNotContain(scrape.Samples, s => s.Name.StartsWith("slab_cluster_", StringComparison.Ordinal) || s.Name == "slab_node_replica_connections");
        Assert.True(scrape.Value("process_working_set_bytes") > 0); // prometheus-net's process metrics are there too
    }

    [Fact]
    public async Task Only_get_metrics_is_served()
    {
        var root = new Uri(Url).GetLeftPart(UriPartial.Authority);
        using (var other = await Http.GetAsync(root + "/other"))
        {
            Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);
        }

        using (var api = await Http.GetAsync(root + "/slab.v1.Node/Status"))
        {
            Assert.Equal(HttpStatusCode.NotFound, api.StatusCode); // gRPC is not served here
        }

        using var post = await Http.PostAsync(Url, new StringContent(""));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
    }

    [Fact]
    public async Task No_metrics_opens_no_port()
    {
        await using var node = await SlabNode.StartAsync(2L << 30, "--no-metrics");
        Assert.Null(node.MetricsUrl);
        Assert.DoesNotContain("metrics on", node.Log, StringComparison.Ordinal);
        // With --api-port 0 and --nbd-port 0 as well, the process listens on no TCP port at all.
        var listening = await HostCommand.CheckedAsync("ss", "-H", "-l", "-t", "-n", "-p");
        Assert.DoesNotContain($"pid={node.Pid},", listening, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_taken_metrics_port_fails_start_up_with_a_message()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var root = SlabNode.NewRoot();
        Directory.CreateDirectory(root);
        try
        {
            var drive = Path.Combine(root, "drive.img");
            using (var file = new FileStream(drive, FileMode.CreateNew))
            {
                file.SetLength(2L << 30);
            }

            var result = await HostCommand.RunAsync(
                "dotnet",
                [SlabNode.SlabdDll, "--data-dir", root + "/d", "--run-dir", root + "/r", "--drive", drive, "--api-port", "0", "--nbd-port", "0",
                    "--skip-pool-benchmark", "--no-docker-plugin", "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)],
                TimeSpan.FromMinutes(2));
            Assert.Equal(1, result.ExitCode);
            Assert.Contains($"slabd: cannot listen: Failed to bind to address http://127.0.0.1:{port}", result.Stderr, StringComparison.Ordinal);
            Assert.Contains("--metrics-port", result.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            await HostCleanup.RemoveEverythingUnderAsync(root);
        }
    }

    [Theory]
    [InlineData("--metrics-port must be a port number 0-65535 (got 'nine')", "--metrics-port", "nine")]
    [InlineData("--metrics-port and --no-metrics contradict each other", "--metrics-port", "9999", "--no-metrics")]
    public async Task A_bad_metrics_option_exits_2_with_a_message(string message, params string[] args)
    {
        var result = await HostCommand.RunAsync("dotnet", [SlabNode.SlabdDll, "--dev", .. args], TimeSpan.FromMinutes(1));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"slabd: {message}", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("--metrics-port PORT", result.Stderr, StringComparison.Ordinal);
    }
}
