using Slab.Common;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.Cli;

public sealed class AlertClockTests
{
    [Fact]
    public void A_condition_is_dated_from_when_it_was_first_seen_until_it_ends()
    {
        var time = new ManualTimeProvider();
        var clock = new AlertClock(time);
        var began = clock.ActiveSince("pool p full");
        time.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(began, clock.ActiveSince("pool p full"));

        clock.Inactive("pool p full");
        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(began + TimeSpan.FromMinutes(6), clock.ActiveSince("pool p full"));
    }
}
