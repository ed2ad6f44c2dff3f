using Slab.Common;
using Slab.Store;

namespace Slab.Hosting;

/// <summary>Loads this node's identity from <c>DATA/node.json</c>, creating it on first start.</summary>
public static class NodeIdentityStore
{
    public static NodeIdentity LoadOrCreate(string dataDirectory, string? requestedName)
    {
        var path = Path.Combine(dataDirectory, "node.json");
        var identity = DurableFile.ReadJson(path, StoreJsonContext.Default.NodeIdentity);
        if (identity is null)
        {
            identity = new NodeIdentity
            {
                NodeId = Guid.NewGuid().ToString("N"),
                NodeName = requestedName ?? Environment.MachineName,
                Created = DateTimeOffset.UtcNow,
            };
            DurableFile.WriteJson(path, identity, StoreJsonContext.Default.NodeIdentity);
        }
        else if (requestedName is not null && requestedName != identity.NodeName)
        {
            identity = identity with { NodeName = requestedName };
            DurableFile.WriteJson(path, identity, StoreJsonContext.Default.NodeIdentity);
        }

        return identity;
    }
}
