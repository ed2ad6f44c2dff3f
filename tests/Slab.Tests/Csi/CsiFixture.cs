using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.Csi;

/// <summary>One slabd and one slab-csi (all services) on it, shared by a test class; each test uses its own names and paths.</summary>
public sealed class CsiFixture : IAsyncLifetime
{
    private SlabNode? _node;
    private CsiPlugin? _plugin;

    public SlabNode Node => _node ?? throw new InvalidOperationException("not started");

    public CsiPlugin Plugin => _plugin ?? throw new InvalidOperationException("not started");

    /// <summary>A fresh directory under the node's root for a test's staging and target paths (removed with the node, mounts included).</summary>
    public string NewDirectory(string name)
    {
        var path = Path.Combine(Node.Root, "csi-" + name + "-" + Guid.NewGuid().ToString("N")[..6]);
        Directory.CreateDirectory(path);
        return path;
    }

    public async Task InitializeAsync()
    {
        _node = await SlabNode.StartAsync(driveBytes: 16L << 30);
        _plugin = await CsiPlugin.StartAsync(_node.Endpoint, nodeId: "k8s-node-a");
    }

    public async Task DisposeAsync()
    {
        if (_plugin is not null)
            await _plugin.DisposeAsync();
        if (_node is not null)
            await _node.DisposeAsync();
    }
}
