using Csi.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Slab.Csi.Slabd;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Controller;

internal sealed partial class ControllerService
{
    public override async Task<CreateSnapshotResponse> CreateSnapshot(CreateSnapshotRequest request, ServerCallContext context)
    {
        if (request.Name.Length == 0)
            throw CsiException.Missing("name");
        if (request.SourceVolumeId.Length == 0)
            throw CsiException.Missing("source_volume_id");
        VolumeParameters.RequireOnlyCoMetadata(request.Parameters.Keys, "snapshot");

        var name = CsiNames.ToSlab(request.Name);
        var volume = await slabd.RequireVolumeAsync(request.SourceVolumeId, context).ConfigureAwait(false);
        if (await FindSnapshotByNameAsync(name, context).ConfigureAwait(false) is { } existing)
            return new CreateSnapshotResponse { Snapshot = ToCsi(RequireSameSource(existing, request)) };

        V1.Snapshot snapshot;
        try
        {
            snapshot = await slabd.Snapshots.CreateAsync(new V1.CreateSnapshotRequest { Volume = volume.Id, Name = name }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.AlreadyExists)
        {
            var winner = await FindSnapshotByNameAsync(name, context).ConfigureAwait(false);
            if (winner is null)
                throw;
            snapshot = RequireSameSource(winner, request);
        }

        LogSnapshotCreated(logger, name, volume.Id, snapshot.Id);
        return new CreateSnapshotResponse { Snapshot = ToCsi(snapshot) };
    }

    private static V1.Snapshot RequireSameSource(V1.Snapshot existing, CreateSnapshotRequest request) =>
        existing.VolumeId == request.SourceVolumeId
            ? existing
            : throw CsiException.AlreadyExists($"snapshot '{request.Name}' already exists, of volume {existing.VolumeId}, not {request.SourceVolumeId}; use another name");

    public override async Task<DeleteSnapshotResponse> DeleteSnapshot(DeleteSnapshotRequest request, ServerCallContext context)
    {
        if (request.SnapshotId.Length == 0)
            throw CsiException.Missing("snapshot_id");
        if (!CsiNames.TrySplitSnapshotId(request.SnapshotId, out var volumeId, out var snapshotId))
            return new DeleteSnapshotResponse(); // no such snapshot can exist: success, as the spec says
        try
        {
            await slabd.Snapshots.DeleteAsync(new V1.DeleteSnapshotRequest { Volume = volumeId, Snapshot = snapshotId }, SlabdApi.Options(context)).ConfigureAwait(false);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
        {
            // The volume or the snapshot is gone already.
        }

        return new DeleteSnapshotResponse();
    }

    public override async Task<ListSnapshotsResponse> ListSnapshots(ListSnapshotsRequest request, ServerCallContext context)
    {
        List<V1.Snapshot> snapshots;
        if (request.SnapshotId.Length > 0)
        {
            var found = await FindSnapshotAsync(request.SnapshotId, context).ConfigureAwait(false);
            snapshots = found is { } f && (request.SourceVolumeId.Length == 0 || f.Volume.Id == request.SourceVolumeId) ? [f.Snapshot] : [];
        }
        else if (request.SourceVolumeId.Length > 0)
        {
            var volume = await slabd.FindVolumeByIdAsync(request.SourceVolumeId, context).ConfigureAwait(false);
            snapshots = volume is null ? [] : await SnapshotsOfAsync(volume.Id, context).ConfigureAwait(false);
        }
        else
        {
            snapshots = await AllSnapshotsAsync(context).ConfigureAwait(false);
        }

        var ordered = snapshots.OrderBy(CsiIdOf, StringComparer.Ordinal).ToList();
        var (page, next) = PageTokens.Page(ordered, CsiIdOf, request.StartingToken, request.MaxEntries);
        var response = new ListSnapshotsResponse { NextToken = next };
        response.Entries.Add(page.Select(s => new ListSnapshotsResponse.Types.Entry { Snapshot = ToCsi(s) }));
        return response;
    }

    private static string CsiIdOf(V1.Snapshot snapshot) => CsiNames.SnapshotId(snapshot.VolumeId, snapshot.Id);

    /// <summary>The CSI view of a slabd snapshot; a member of a group snapshot names its group.</summary>
    internal static global::Csi.V1.Snapshot ToCsi(V1.Snapshot snapshot) => new()
    {
        SnapshotId = CsiIdOf(snapshot),
        SourceVolumeId = snapshot.VolumeId,
        SizeBytes = (long)snapshot.SizeBytes,
        CreationTime = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(snapshot.CreatedUnixMs)),
        // slabd commits a snapshot only once every replica has cut it: usable at once.
        ReadyToUse = true,
        GroupSnapshotId = CsiNames.IsGroupSnapshotName(snapshot.Name) ? snapshot.Name : "",
    };

    private Task<V1.Snapshot?> FindSnapshotByNameAsync(string name, ServerCallContext context) => SnapshotCatalog.FindByNameAsync(slabd, name, context);

    private Task<List<V1.Snapshot>> AllSnapshotsAsync(ServerCallContext context) => SnapshotCatalog.AllAsync(slabd, context);

    private Task<List<V1.Snapshot>> SnapshotsOfAsync(string volumeId, ServerCallContext context) => SnapshotCatalog.OfVolumeAsync(slabd, volumeId, context);

    /// <summary>The snapshot with this CSI id and its volume, or null.</summary>
    private async Task<(V1.Volume Volume, V1.Snapshot Snapshot)?> FindSnapshotAsync(string csiId, ServerCallContext context)
    {
        if (!CsiNames.TrySplitSnapshotId(csiId, out var volumeId, out var snapshotId))
            return null;
        var volume = await slabd.FindVolumeByIdAsync(volumeId, context).ConfigureAwait(false);
        if (volume is null)
            return null;
        var snapshot = (await SnapshotsOfAsync(volume.Id, context).ConfigureAwait(false)).FirstOrDefault(s => s.Id == snapshotId);
        return snapshot is null ? null : (volume, snapshot);
    }
}
