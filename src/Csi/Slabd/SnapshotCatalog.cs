using Grpc.Core;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Slabd;

/// <summary>slabd's snapshots across volumes (slabd lists them per volume; CSI names and lists them cluster-wide).</summary>
internal static class SnapshotCatalog
{
    /// <summary>CSI snapshot names are unique across volumes; slabd's are per volume. Searches them all.</summary>
    public static async Task<V1.Snapshot?> FindByNameAsync(SlabdApi slabd, string name, ServerCallContext context) =>
        (await AllAsync(slabd, context).ConfigureAwait(false)).FirstOrDefault(s => s.Name == name);

    public static async Task<List<V1.Snapshot>> AllAsync(SlabdApi slabd, ServerCallContext context)
    {
        var volumes = await slabd.Volumes.EnumerateAsync(new V1.EnumerateVolumesRequest(), SlabdApi.Options(context)).ConfigureAwait(false);
        var all = new List<V1.Snapshot>();
        foreach (var volume in volumes.Volumes.Where(v => v.SnapshotCount > 0))
            all.AddRange(await OfVolumeAsync(slabd, volume.Id, context).ConfigureAwait(false));
        return all;
    }

    public static async Task<List<V1.Snapshot>> OfVolumeAsync(SlabdApi slabd, string volumeId, ServerCallContext context)
    {
        try
        {
            var response = await slabd.Snapshots.EnumerateAsync(new V1.EnumerateSnapshotsRequest { Volume = volumeId }, SlabdApi.Options(context)).ConfigureAwait(false);
            return [.. response.Snapshots];
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
        {
            return []; // deleted meanwhile
        }
    }
}
