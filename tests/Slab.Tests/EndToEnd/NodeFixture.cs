using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>One slabd shared by the tests of a class (each test uses its own volume names).</summary>
public sealed class NodeFixture : IAsyncLifetime
{
    private SlabNode? _node;

    public SlabNode Node => _node ?? throw new InvalidOperationException("node not started");

    public async Task InitializeAsync() => _node = await SlabNode.StartAsync(driveBytes: 16L << 30);

    public async Task DisposeAsync()
    {
        if (_node is not null)
        {
            await _node.DisposeAsync();
        }
    }
}
