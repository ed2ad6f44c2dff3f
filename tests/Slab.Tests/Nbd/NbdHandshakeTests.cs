using System.Buffers.Binary;
using System.Text;
using Slab.Block;
using Slab.Frontend.Nbd;
using Xunit;

namespace Slab.Tests.Nbd;

public sealed class NbdHandshakeTests
{
    private const ulong Size = 16 * 1024 * 1024;

    private static TestExportCatalog Catalog() => new TestExportCatalog()
        .Add("disk", new MemoryBlockTarget((long)Size), "the disk")
        .Add("ro", new MemoryBlockTarget((long)Size, readOnly: true), "read-only")
        .Add("", new MemoryBlockTarget(4096), "default export");

    [Fact]
    public async Task Greeting_offers_fixed_newstyle_and_no_zeroes()
    {
        await using var client = new NbdPipeClient(Catalog());
        var flags = await client.GreetAsync();
        Assert.Equal(3, flags);
    }
}
