using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.Store;

public sealed class XfsScratchTests
{
    [Fact]
    public async Task Dispose_unmounts_detaches_the_loop_device_and_deletes_everything()
    {
        var xfs = await XfsScratch.CreateAsync();
        try
        {
            Assert.True(await xfs.IsMountedAsync());
            Assert.Single(await xfs.LoopDevicesAsync());
            await File.WriteAllTextAsync(xfs.PathOf("hello"), "world");
            Assert.True(xfs.AvailableBytes > 200L * 1024 * 1024);
        }
        finally
        {
            await xfs.DisposeAsync();
        }

        Assert.False(await xfs.IsMountedAsync());
        Assert.Empty(await xfs.LoopDevicesAsync());
        Assert.False(Directory.Exists(xfs.Root));
        await xfs.DisposeAsync(); // idempotent
    }
}
