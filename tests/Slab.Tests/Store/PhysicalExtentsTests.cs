using Slab.Store;
using Xunit;

namespace Slab.Tests.Store;

public sealed class PhysicalExtentsTests
{
    private static PhysicalExtent E(long logical, long physical, long length, bool comparable = true) => new(logical, physical, length, comparable);

    [Fact]
    public void Ranges_that_both_files_map_to_the_same_blocks_or_both_leave_as_holes_do_not_differ()
    {
        // older: [0,100) at 1000, hole [100,200), [200,300) at 5000.
        // newer: [0,40) shared, [40,60) moved (a write), [60,100) shared, [150,170) new data,
        //        [200,250) shared, [250,300) a hole now, [300,350) past the older's end.
        PhysicalExtent[] older = [E(0, 1000, 100), E(200, 5000, 100)];
        PhysicalExtent[] newer = [E(0, 1000, 40), E(40, 9000, 20), E(60, 1060, 40), E(150, 7000, 20), E(200, 5000, 50), E(300, 8000, 50)];

        var differing = PhysicalExtents.Differing(older, newer, 400);

        Assert.Equal([(40L, 20L), (150L, 20L), (250L, 100L)], differing);
    }

    [Fact]
    public void An_extent_whose_address_means_nothing_differs_and_identical_maps_do_not()
    {
        PhysicalExtent[] map = [E(0, 1000, 100), E(100, 2000, 100, comparable: false)];
        Assert.Equal([(100L, 100L)], PhysicalExtents.Differing(map, map, 200));
        Assert.Empty(PhysicalExtents.Differing([E(0, 1000, 100)], [E(0, 1000, 100)], 100));
        Assert.Equal([(0L, 100L)], PhysicalExtents.Differing([], [E(0, 1000, 100)], 100));
        Assert.Equal([(0L, 100L)], PhysicalExtents.Differing([E(0, 1000, 100)], [], 100));
    }
}
