using Prometheus;
using Slab.Hosting;
using Slab.Metrics;
using Slab.Volumes;
using Xunit;

namespace Slab.Tests.Metrics;

/// <summary>The metrics' parts that need no slabd: the latency observer, per-scrape series, the command line.</summary>
public sealed class MetricsUnitTests
{
    private static (CollectorRegistry Registry, IMetricFactory Factory) NewRegistry()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        factory.ExemplarBehavior = ExemplarBehavior.NoExemplars();
        return (registry, factory);
    }

    private static async Task<PrometheusScrape> ScrapeAsync(CollectorRegistry registry)
    {
        using var text = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(text);
        return await PrometheusScrape.ParseAsync(System.Text.Encoding.UTF8.GetString(text.ToArray()));
    }

    [Fact]
    public async Task The_latency_observer_allocates_nothing_and_fills_the_histogram()
    {
        var (registry, factory) = NewRegistry();
        var observer = new VolumeLatencyObserver(VolumeLatencyObserver.CreateHistogram(factory), "db", "id1", sequence: 1);
        observer.Observe(IoKind.Write, 0.001); // first use: any lazy set-up happens here

        const int Observations = 10_000;
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Observations; i++)
        {
            observer.Observe(IoKind.Write, 30e-6 * (i % 1000));
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        observer.Observe(IoKind.Read, 0.0001);
        var scrape = await ScrapeAsync(registry);
        Assert.Equal("histogram", scrape.TypeOf("slab_volume_operation_duration_seconds"));
        (string, string)[] write = [("volume", "db"), ("volume_id", "id1"), ("op", "write")];
        Assert.Equal(Observations + 1, scrape.Value("slab_volume_operation_duration_seconds_count", write));
        Assert.Equal(Observations + 1, scrape.Value("slab_volume_operation_duration_seconds_bucket", [.. write, ("le", "+Inf")]));
        Assert.Equal(1, scrape.Value("slab_volume_operation_duration_seconds_count", ("volume_id", "id1"), ("op", "read")));
        // 50 µs doubling: the first bucket, and 3.2768 s the last finite one.
        var bounds = scrape.Find("slab_volume_operation_duration_seconds_bucket", write).Select(s => s.Labels["le"]).ToList();
        Assert.Equal("5e-05", bounds[0]);
        Assert.Equal(["3.2768", "+Inf"], bounds[^2..]);
        // 0, 30 µs: under 50 µs (2 of every 1000 observations, plus none of the others).
        Assert.Equal(2 * (Observations / 1000), scrape.Value("slab_volume_operation_duration_seconds_bucket", [.. write, ("le", "5e-05")]));

        observer.RemoveSeries();
        Assert.Empty((await ScrapeAsync(registry)).Find("slab_volume_operation_duration_seconds_count"));
    }

    [Fact]
    public async Task Series_not_set_in_a_round_are_removed_and_a_removed_counter_restarts_at_zero()
    {
        var (registry, factory) = NewRegistry();
        var gauge = new ScrapedSeries<Gauge.Child>(factory.CreateGauge("t_gauge", "test", ["name"]));
        var counter = new ScrapedSeries<Counter.Child>(factory.CreateCounter("t_total", "test", ["name"]));
        gauge["a"].Set(1);
        gauge["b"].Set(2);
        counter["a"].IncTo(10);
        gauge.EndRound();
        counter.EndRound();

        gauge["b"].Set(3);
        counter["a"].IncTo(5); // a counter never goes down by itself...
        gauge.EndRound();
        counter.EndRound();
        var scrape = await ScrapeAsync(registry);
        Assert.Empty(scrape.Find("t_gauge", ("name", "a")));
        Assert.Equal(3, scrape.Value("t_gauge", ("name", "b")));
        Assert.Equal(10, scrape.Value("t_total", ("name", "a")));

        counter.Remove("a"); // ...so a reset removes it first
        counter["a"].IncTo(5);
        counter.EndRound();
        Assert.Equal(5, (await ScrapeAsync(registry)).Value("t_total", ("name", "a")));
    }

    [Fact]
    public void The_metrics_port_is_9506_or_port_base_plus_5_unless_given()
    {
        string[] dev = ["--dev", "--data-dir", "/d", "--run-dir", "/r"];
        var single = SlabdOptions.Parse(dev);
        Assert.True(single.Metrics);
        Assert.Equal(9506, single.MetricsPort);
        Assert.Equal(0, SlabdOptions.Parse([.. dev, "--metrics-port", "0"]).MetricsPort);
        Assert.False(SlabdOptions.Parse([.. dev, "--no-metrics"]).Metrics);

        string[] cluster = [.. dev, "--cluster-id", "c", "--advertise", "127.0.0.1", "--kvdb", "--port-base", "20000"];
        Assert.Equal(20005, SlabdOptions.Parse(cluster).MetricsPort);
        Assert.Equal(7000, SlabdOptions.Parse([.. cluster, "--metrics-port", "7000"]).MetricsPort);
        Assert.Equal(7000, SlabdOptions.Parse([.. dev, "--metrics-port=7000", "--cluster-id", "c", "--advertise", "127.0.0.1", "--kvdb", "--port-base", "20000"]).MetricsPort);
    }

    [Theory]
    [InlineData("--metrics-port must be a port number 0-65535 (got 'abc')", "--metrics-port", "abc")]
    [InlineData("--metrics-port must be a port number 0-65535 (got '65536')", "--metrics-port", "65536")]
    [InlineData("--metrics-port needs a value", "--metrics-port")]
    [InlineData("--metrics-port and --no-metrics contradict each other", "--metrics-port", "9999", "--no-metrics")]
    [InlineData("--no-metrics takes no value", "--no-metrics=1")]
    public void Bad_metrics_options_are_refused_with_a_message(string message, params string[] args)
    {
        var e = Assert.Throws<FormatException>(() => SlabdOptions.Parse(["--dev", .. args]));
        Assert.Equal(message, e.Message);
    }
}
