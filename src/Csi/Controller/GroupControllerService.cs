using Csi.V1;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Slab.Csi.Slabd;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Controller;

/// <summary>
/// CSI GroupController: a crash-consistent snapshot of several volumes at one write boundary (slabd's
/// Snapshots.CreateGroup holds the writes of all of them, on whichever nodes, until every one is
/// cut). A group is its member snapshots: each carries the group's slabd name ("group." + the CSI
/// name), which is also the group's id, so the group is found again without a record of its own.
/// </summary>
internal sealed partial class GroupControllerService(SlabdApi slabd, ILogger<GroupControllerService> logger) : GroupController.GroupControllerBase
{
    public override Task<GroupControllerGetCapabilitiesResponse> GroupControllerGetCapabilities(GroupControllerGetCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new GroupControllerGetCapabilitiesResponse();
        response.Capabilities.Add(new GroupControllerServiceCapability
        {
            Rpc = new GroupControllerServiceCapability.Types.RPC { Type = GroupControllerServiceCapability.Types.RPC.Types.Type.CreateDeleteGetVolumeGroupSnapshot },
        });
        return Task.FromResult(response);
    }

    public override async Task<CreateVolumeGroupSnapshotResponse> CreateVolumeGroupSnapshot(CreateVolumeGroupSnapshotRequest request, ServerCallContext context)
    {
        if (request.Name.Length == 0)
            throw CsiException.Missing("name");
        if (request.SourceVolumeIds.Count == 0)
            throw CsiException.Missing("source_volume_ids");
        VolumeParameters.RequireOnlyCoMetadata(request.Parameters.Keys, "group snapshot");

        var sources = request.SourceVolumeIds.ToList();
        if (sources.Distinct(StringComparer.Ordinal).Count() != sources.Count)
            throw CsiException.InvalidArgument("source_volume_ids names a volume twice");
        var name = CsiNames.ToGroupSnapshotName(request.Name);
        var existing = await MembersAsync(name, context).ConfigureAwait(false);
        if (existing.Count > 0)
            return new CreateVolumeGroupSnapshotResponse { GroupSnapshot = RequireSameSources(name, existing, sources) };

        foreach (var id in sources)
        {
            _ = await slabd.FindVolumeByIdAsync(id, context).ConfigureAwait(false)
                ?? throw CsiException.NotFound($"source volume {id} does not exist");
        }

        var create = new V1.CreateGroupSnapshotRequest { Name = name };
        create.Volumes.Add(sources);
        List<V1.Snapshot> members;
        try
        {
            members = [.. (await slabd.Snapshots.CreateGroupAsync(create, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false)).Snapshots];
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.AlreadyExists)
        {
            var winner = await MembersAsync(name, context).ConfigureAwait(false);
            if (winner.Count == 0)
                throw;
            return new CreateVolumeGroupSnapshotResponse { GroupSnapshot = RequireSameSources(name, winner, sources) };
        }

        LogCreated(logger, name, members.Count);
        return new CreateVolumeGroupSnapshotResponse { GroupSnapshot = ToCsi(name, members) };
    }

    public override async Task<GetVolumeGroupSnapshotResponse> GetVolumeGroupSnapshot(GetVolumeGroupSnapshotRequest request, ServerCallContext context)
    {
        if (request.GroupSnapshotId.Length == 0)
            throw CsiException.Missing("group_snapshot_id");
        var members = CsiNames.IsGroupSnapshotName(request.GroupSnapshotId) ? await MembersAsync(request.GroupSnapshotId, context).ConfigureAwait(false) : [];
        if (members.Count == 0)
            throw CsiException.NotFound($"group snapshot {request.GroupSnapshotId} does not exist");
        RequireSameSnapshots(request.GroupSnapshotId, members, request.SnapshotIds);
        return new GetVolumeGroupSnapshotResponse { GroupSnapshot = ToCsi(request.GroupSnapshotId, members) };
    }

    public override async Task<DeleteVolumeGroupSnapshotResponse> DeleteVolumeGroupSnapshot(DeleteVolumeGroupSnapshotRequest request, ServerCallContext context)
    {
        if (request.GroupSnapshotId.Length == 0)
            throw CsiException.Missing("group_snapshot_id");
        if (!CsiNames.IsGroupSnapshotName(request.GroupSnapshotId))
            return new DeleteVolumeGroupSnapshotResponse(); // no such group can exist
        var members = await MembersAsync(request.GroupSnapshotId, context).ConfigureAwait(false);
        var memberIds = members.Select(m => CsiNames.SnapshotId(m.VolumeId, m.Id)).ToHashSet(StringComparer.Ordinal);
        foreach (var id in request.SnapshotIds.Where(id => !memberIds.Contains(id)))
        {
            // A member deleted already is fine (a retry); a snapshot that exists outside the group is a mismatch.
            if (CsiNames.TrySplitSnapshotId(id, out var volumeId, out var snapshotId)
                && (await SnapshotCatalog.OfVolumeAsync(slabd, volumeId, context).ConfigureAwait(false)).Any(s => s.Id == snapshotId))
            {
                throw CsiException.InvalidArgument($"snapshot {id} is not a member of group snapshot {request.GroupSnapshotId}");
            }
        }

        foreach (var member in members)
        {
            try
            {
                await slabd.Snapshots.DeleteAsync(new V1.DeleteSnapshotRequest { Volume = member.VolumeId, Snapshot = member.Id }, SlabdApi.Options(context)).ConfigureAwait(false);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
            {
                // gone already
            }
        }

        return new DeleteVolumeGroupSnapshotResponse();
    }

    private async Task<List<V1.Snapshot>> MembersAsync(string groupName, ServerCallContext context) =>
        [.. (await SnapshotCatalog.AllAsync(slabd, context).ConfigureAwait(false)).Where(s => s.Name == groupName)];

    private static VolumeGroupSnapshot RequireSameSources(string name, List<V1.Snapshot> members, List<string> sources)
    {
        var have = members.Select(m => m.VolumeId).Order(StringComparer.Ordinal);
        var want = sources.Order(StringComparer.Ordinal);
        return have.SequenceEqual(want)
            ? ToCsi(name, members)
            : throw CsiException.AlreadyExists($"group snapshot {name} already exists, of volumes {string.Join(", ", have)}, not {string.Join(", ", want)}; use another name");
    }

    private static void RequireSameSnapshots(string groupId, List<V1.Snapshot> members, IEnumerable<string> snapshotIds)
    {
        var given = snapshotIds.ToList();
        if (given.Count == 0)
            return;
        var have = members.Select(m => CsiNames.SnapshotId(m.VolumeId, m.Id)).Order(StringComparer.Ordinal).ToList();
        if (!have.SequenceEqual(given.Order(StringComparer.Ordinal)))
            throw CsiException.InvalidArgument($"snapshot_ids do not match group snapshot {groupId}: it holds {string.Join(", ", have)}");
    }

    private static VolumeGroupSnapshot ToCsi(string groupId, List<V1.Snapshot> members)
    {
        var group = new VolumeGroupSnapshot
        {
            GroupSnapshotId = groupId,
            ReadyToUse = true,
            CreationTime = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(members.Min(m => m.CreatedUnixMs))),
        };
        group.Snapshots.Add(members.Select(ControllerService.ToCsi));
        return group;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Created group snapshot {Name} of {Volumes} volume(s)")]
    private static partial void LogCreated(ILogger logger, string name, int volumes);
}
