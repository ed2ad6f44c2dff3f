using Slab.Tests.Replication;
using Slab.Volumes;
using Xunit;

namespace Slab.Tests.VolumeLayer;

public sealed class CopyThrottleTests
{
    [Fact]
    public async Task Copies_wait_for_the_rate_after_a_one_second_burst_and_an_unlimited_throttle_never_waits()
    {
        var time = new ManualTimeProvider();
        var throttle = new CopyThrottle(time);
        Assert.True(throttle.AcquireAsync(1L << 40, default).AsTask().IsCompletedSuccessfully); // 0: unlimited

        throttle.BytesPerSecond = 10_000_000;
        time.Advance(TimeSpan.FromSeconds(5)); // idle time fills the bucket up to one second's worth
        Assert.True(throttle.AcquireAsync(10_000_000, default).AsTask().IsCompletedSuccessfully);

        var next = throttle.AcquireAsync(5_000_000, default).AsTask();
        Assert.False(next.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(400));
        Assert.False(next.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(100));
        await next; // 5 MB at 10 MB/s: half a second

        // Lifting the limit lets the next copy through at once.
        throttle.BytesPerSecond = 0;
        Assert.True(throttle.AcquireAsync(1L << 30, default).AsTask().IsCompletedSuccessfully);
        Assert.Throws<ArgumentOutOfRangeException>(() => throttle.BytesPerSecond = -1);
    }
}
