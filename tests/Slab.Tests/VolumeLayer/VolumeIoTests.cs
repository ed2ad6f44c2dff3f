using Microsoft.Extensions.Logging.Abstractions;
using Slab.Block;
using Slab.Common;
using Slab.Tests.Replication;
using Slab.Volumes;
using Xunit;

namespace Slab.Tests.VolumeLayer;

/// <summary>QoS (token buckets, enforced in the controller) and the controller's I/O statistics, on memory replicas and a manual clock.</summary>
public sealed class VolumeIoTests
{
    private static VolumeController Controller(FaultyReplica replica, ManualTimeProvider time, IoLimits limits, IIoLatencyObserver? observer = null)
        => new("vol-id", "vol", replica.Size, 1, [new ReplicaMember("n1", "node1", replica, ReplicaMode.InSync, IsLocal: true)], authority: null,
            NullLogger.Instance, io: new VolumeIoSettings(time, limits, observer) { QosBurst = TimeSpan.FromMilliseconds(50) });

    [Fact]
    public void Operations_bucket_lets_a_bounded_burst_pass_then_spaces_requests_at_its_rate()
    {
        var time = new ManualTimeProvider();
        var limiter = new VolumeIoLimiter(new IoLimits { WriteIops = 100 }, time, TimeSpan.FromMilliseconds(50));
        var waits = Enumerable.Range(0, 106).Select(_ => limiter.Reserve(isWrite: true, bytes: 4096)).ToArray();

        // 50 ms of burst at 100/s = 5 requests at once; the n-th then waits n × 10 ms − 50 ms.
        Assert.All(waits[..6], w => Assert.Equal(0, w));
        Assert.Equal(TimeSpan.FromMilliseconds(10).Ticks, waits[6]);
        Assert.Equal(TimeSpan.FromMilliseconds(1000).Ticks, waits[105]);

        // Reads have their own (here unlimited) buckets.
        Assert.Equal(0, limiter.Reserve(isWrite: false, bytes: 1 << 20));
    }

    [Fact]
    public void Default_burst_lets_a_second_at_the_rate_pass_once_the_reserved_requests_are_due()
    {
        var time = new ManualTimeProvider();
        var limiter = new VolumeIoLimiter(new IoLimits { WriteIops = 100 }, time, VolumeIoLimiter.DefaultBurst);
        Assert.Equal(TimeSpan.FromSeconds(1), limiter.Burst);

        // Steady state: a request every 10 ms, each one waits (the bucket is a second ahead).
        for (var i = 0; i < 101; i++)
        {
            Assert.Equal(0, limiter.Reserve(isWrite: true, bytes: 4096));
        }

        Assert.Equal(TimeSpan.FromMilliseconds(10).Ticks, limiter.Reserve(isWrite: true, bytes: 4096));
        time.Advance(TimeSpan.FromMilliseconds(1020)); // the queued requests ran; then the device stalled for a while

        // Everything reserved so far is due by now; the next second's worth passes at once (the lost
        // time is made up), the one after it waits again.
        var passed = 0;
        while (limiter.Reserve(isWrite: true, bytes: 4096) == 0)
        {
            passed++;
        }

        Assert.Equal(101, passed);
    }

    [Fact]
    public void Bandwidth_bucket_charges_bytes_and_idle_time_does_not_pile_up()
    {
        var time = new ManualTimeProvider();
        var limiter = new VolumeIoLimiter(new IoLimits { ReadBytesPerSecond = 1_000_000 }, time, TimeSpan.FromMilliseconds(50));
        Assert.Equal(0, limiter.Reserve(isWrite: false, bytes: 1_000_000));
        Assert.Equal(TimeSpan.FromMilliseconds(950).Ticks, limiter.Reserve(isWrite: false, bytes: 1_000_000));

        // An hour idle buys one request plus 50 ms of burst, not an hour of credit.
        time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(0, limiter.Reserve(isWrite: false, bytes: 50_000));
        Assert.Equal(0, limiter.Reserve(isWrite: false, bytes: 50_000));
        Assert.Equal(TimeSpan.FromMilliseconds(50).Ticks, limiter.Reserve(isWrite: false, bytes: 50_000));
    }

    [Fact]
    public async Task Controller_holds_a_write_over_the_limit_until_the_clock_allows_it_and_counts_the_wait()
    {
        var time = new ManualTimeProvider();
        var replica = new FaultyReplica();
        using var controller = Controller(replica, time, new IoLimits { WriteIops = 10 });
        var data = new byte[4096];

        // 10/s with 50 ms of burst: the first passes at once, the second waits 100 ms − 50 ms.
        await controller.WriteAsync(0, data, BlockWriteFlags.None, CancellationToken.None);
        var held = controller.WriteAsync(4096, data, BlockWriteFlags.None, CancellationToken.None).AsTask();
        Assert.False(held.IsCompleted);
        Assert.Equal(1, replica.Writes);
        Assert.Equal(1, controller.Stats.InFlight);

        time.Advance(TimeSpan.FromMilliseconds(49));
        Assert.False(held.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));
        await held.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, replica.Writes);

        var stats = controller.Stats.Snapshot();
        Assert.Equal(2, stats.Writes.Operations);
        Assert.Equal(8192, stats.Writes.Bytes);
        Assert.Equal(0, stats.InFlight);
        Assert.Equal(TimeSpan.FromMilliseconds(50), stats.Throttled);
        Assert.Equal(TimeSpan.FromMilliseconds(50), stats.Writes.TotalLatency); // the wait is part of what the client saw

        // Reads are not limited by a write limit; flushes never are.
        await controller.ReadAsync(0, new byte[4096], CancellationToken.None);
        await controller.FlushAsync(CancellationToken.None);
        Assert.Equal(1, controller.Stats.Snapshot().Reads.Operations);
    }

    [Fact]
    public async Task Limits_change_online_and_removing_them_lets_requests_through_at_once()
    {
        var time = new ManualTimeProvider();
        var replica = new FaultyReplica();
        using var controller = Controller(replica, time, IoLimits.None);
        var data = new byte[4096];
        for (var i = 0; i < 100; i++)
        {
            Assert.True(controller.WriteAsync(0, data, BlockWriteFlags.None, CancellationToken.None).AsTask().IsCompletedSuccessfully);
        }

        controller.SetLimits(new IoLimits { WriteIops = 1, WriteBytesPerSecond = 1000 });
        Assert.Equal(1, controller.Limits.WriteIops);
        await controller.WriteAsync(0, data, BlockWriteFlags.None, CancellationToken.None).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        var held = controller.WriteAsync(0, data, BlockWriteFlags.None, CancellationToken.None).AsTask();
        Assert.False(held.IsCompleted);

        controller.SetLimits(IoLimits.None);
        Assert.Same(IoLimits.None, controller.Limits);
        Assert.True(controller.WriteAsync(0, data, BlockWriteFlags.None, CancellationToken.None).AsTask().IsCompletedSuccessfully);

        // The one admitted under the old limits still waits for its turn, then completes.
        time.Advance(TimeSpan.FromSeconds(5));
        await held.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Stats_count_every_kind_errors_and_latency_and_tell_the_observer()
    {
        var time = new ManualTimeProvider();
        var replica = new FaultyReplica();
        var observer = new RecordingObserver();
        using var controller = Controller(replica, time, IoLimits.None, observer);
        replica.Hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var pending = controller.WriteAsync(0, new byte[8192], BlockWriteFlags.None, CancellationToken.None).AsTask();
        Assert.Equal(1, controller.Stats.InFlight);
        time.Advance(TimeSpan.FromMilliseconds(3));
        replica.Hold.SetResult();
        await pending.WaitAsync(TimeSpan.FromSeconds(10));
        replica.Hold = null;

        await controller.ReadAsync(0, new byte[4096], CancellationToken.None);
        await controller.TrimAsync(0, 65536, CancellationToken.None);
        await controller.WriteZeroesAsync(0, 4096, WriteZeroesFlags.None, CancellationToken.None);
        await controller.FlushAsync(CancellationToken.None);
        replica.Fail = BlockError.IOError;
        await Assert.ThrowsAsync<BlockTargetException>(async () => await controller.ReadAsync(0, new byte[4096], CancellationToken.None));

        var stats = controller.Stats.Snapshot();
        Assert.Equal(new IoTotals(1, 8192, 0, TimeSpan.FromMilliseconds(3)), stats.Writes);
        Assert.Equal(new IoTotals(2, 4096, 1, TimeSpan.Zero), stats.Reads);
        Assert.Equal(new IoTotals(2, 69632, 0, TimeSpan.Zero), stats.Discards);
        Assert.Equal(1, stats.Flushes.Operations);
        Assert.Equal(0, stats.InFlight);
        Assert.Equal(TimeSpan.Zero, stats.Throttled);
        Assert.Equal(6, observer.Count);
        Assert.Equal(0.003, observer.Seconds[0], precision: 9);
    }

    [Theory]
    [InlineData("1000,500", 1000, 500)]
    [InlineData("250", 250, 250)]
    [InlineData("0,20", 0, 20)]
    [InlineData(" 7 , 8 ", 7, 8)]
    public void Limit_pairs_parse(string text, long read, long write)
    {
        Assert.True(IoLimitSyntax.TryParsePair(text, IoLimitSyntax.MaxIops, out var r, out var w, out var error), error);
        Assert.Equal((read, write), (r, w));
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("1,2,3", "3 values")]
    [InlineData("-5", "negative")]
    [InlineData("abc", "not a whole number")]
    [InlineData("1.5", "not a whole number")]
    [InlineData("10,", "empty")]
    [InlineData("99999999999999999999", "not a whole number")]
    [InlineData("2000000000", "over the limit")]
    public void Bad_limit_pairs_are_refused_with_a_reason(string text, string reason)
    {
        Assert.False(IoLimitSyntax.TryParsePair(text, IoLimitSyntax.MaxIops, out _, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Limits_over_the_api_are_validated_and_described()
    {
        var error = Assert.Throws<SlabException>(() => IoLimitSyntax.Validate(new IoLimits { ReadIops = -1 }));
        Assert.Equal(SlabErrorCode.InvalidArgument, error.Code);
        Assert.Contains("max read IOPS", error.Message, StringComparison.Ordinal);
        Assert.Equal("none", IoLimitSyntax.Describe(0, 0, 0, 0));
        Assert.Equal("IOPS 1,000 read, unlimited write; MB/s unlimited read, 20 write", IoLimitSyntax.Describe(1000, 0, 0, 20_000_000));
    }

    private sealed class RecordingObserver : IIoLatencyObserver
    {
        public List<double> Seconds { get; } = [];

        public int Count => Seconds.Count;

        public void Observe(IoKind kind, double seconds)
        {
            lock (Seconds)
            {
                Seconds.Add(seconds);
            }
        }
    }
}
