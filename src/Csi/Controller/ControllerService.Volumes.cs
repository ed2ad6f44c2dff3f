using Csi.V1;
using Grpc.Core;
using Slab.Csi.Slabd;
using V1 = Slab.Api.V1;

namespace Slab.Csi.Controller;

internal sealed partial class ControllerService
{
    public override async Task<CreateVolumeResponse> CreateVolume(CreateVolumeRequest request, ServerCallContext context)
    {
        if (request.Name.Length == 0)
            throw CsiException.Missing("name");
        VolumeCapabilities.Require(request.VolumeCapabilities);
        var parameters = VolumeParameters.Parse(request.Parameters, request.MutableParameters);
        var (fs, fsExplicit) = ResolveFs(request.VolumeCapabilities, parameters);
        var source = await ResolveSourceAsync(request.VolumeContentSource, context).ConfigureAwait(false);
        if (source is not null && !fsExplicit)
            fs = FsOf(source.Volume); // a clone holds its source's filesystem; a repeat must compare with that
        var size = CapacityRanges.Resolve(request.CapacityRange, source?.SizeBytes ?? 0);
        var nodes = await ListNodesAsync(context).ConfigureAwait(false);
        var placement = Constrain(parameters, request.AccessibilityRequirements, nodes);
        var name = CsiNames.ToSlab(request.Name);

        if (await slabd.FindVolumeAsync(name, context).ConfigureAwait(false) is { } existing)
        {
            RequireCompatible(existing, request, parameters, fs, source);
            return new CreateVolumeResponse { Volume = ToCsi(existing, nodes) };
        }

        V1.Volume volume;
        try
        {
            volume = source is null
                ? await CreateEmptyAsync(name, size, fs, parameters, placement, context).ConfigureAwait(false)
                : await CreateFromSourceAsync(name, size, fs, fsExplicit, parameters, placement, source, context).ConfigureAwait(false);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.AlreadyExists)
        {
            // A concurrent CreateVolume of the same name won: answer as a repeat would.
            var winner = await slabd.FindVolumeAsync(name, context).ConfigureAwait(false);
            if (winner is null)
                throw;
            RequireCompatible(winner, request, parameters, fs, source);
            volume = winner;
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.ResourceExhausted && placement.Constrained)
        {
            throw CsiException.ResourceExhausted($"slabd: {ex.Status.Detail} (within the requested topology: {placement})");
        }

        LogCreated(logger, name, volume.Id, (long)(volume.Spec?.SizeBytes ?? 0), volume.Spec?.Repl ?? 1, source is null ? "" : $" from {source.Reference}");
        return new CreateVolumeResponse { Volume = ToCsi(volume, nodes) };
    }

    private async Task<V1.Volume> CreateEmptyAsync(string name, long size, string fs, VolumeParameters parameters, PlacementConstraints placement, ServerCallContext context)
    {
        var spec = new V1.VolumeSpec
        {
            SizeBytes = (ulong)size,
            Repl = parameters.Repl ?? 1,
            Fs = fs,
            IoPriority = parameters.IoPriority ?? V1.IoPriority.Unspecified,
            Limits = parameters.Limits,
        };
        foreach (var (key, value) in parameters.Labels)
            spec.Labels[key] = value;
        spec.Nodes.Add(placement.Nodes);
        spec.Zones.Add(placement.Zones);
        spec.Racks.Add(placement.Racks);
        var create = new V1.CreateVolumeRequest { Name = name, Spec = spec, PreferredNode = placement.PreferredNode ?? "" };
        return await slabd.Volumes.CreateAsync(create, SlabdApi.Options(context)).ConfigureAwait(false);
    }

    /// <summary>
    /// A clone of a volume or a snapshot: slabd reflinks the source's replicas, then the clone grows to
    /// the requested size and takes the requested replica count. A clone that fails half-way is deleted,
    /// so that a retry starts clean.
    /// </summary>
    private async Task<V1.Volume> CreateFromSourceAsync(
        string name, long size, string fs, bool fsExplicit, VolumeParameters parameters, PlacementConstraints placement, ContentSource source, ServerCallContext context)
    {
        var sourceFs = FsOf(source.Volume);
        if (fsExplicit && !string.Equals(fs, sourceFs, StringComparison.Ordinal))
            throw CsiException.InvalidArgument($"the source {source.Reference} holds {sourceFs}; a clone keeps its source's data, so it cannot be {fs}");
        if (placement.Constrained || parameters.Nodes.Count > 0)
            throw CsiException.InvalidArgument($"a clone's replicas start where its source's are (reflinked); drop nodes/zones/racks and the topology requirement, or create an empty volume");
        if (parameters.IoPriority is { } priority && priority != source.Volume.Spec.IoPriority && source.Volume.Spec.IoPriority != V1.IoPriority.Unspecified)
            throw CsiException.InvalidArgument($"the source {source.Reference} is on {source.Volume.Spec.IoPriority} pools; a clone stays on its source's pools");

        var clone = new V1.CloneVolumeRequest { Source = source.Reference, Name = name };
        foreach (var (key, value) in parameters.Labels)
            clone.Labels[key] = value;
        var volume = await slabd.Volumes.CloneAsync(clone, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
        try
        {
            if ((long)volume.Spec.SizeBytes < size)
            {
                volume = await slabd.Volumes.UpdateAsync(new V1.UpdateVolumeRequest { Volume = volume.Id, SizeBytes = (ulong)size }, SlabdApi.Options(context)).ConfigureAwait(false);
            }

            if (parameters.Repl is { } repl && repl != ReplOf(volume))
            {
                volume = await slabd.Volumes.HaUpdateAsync(new V1.HaUpdateVolumeRequest { Volume = volume.Id, Repl = repl }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
            }

            if (parameters.Limits is { } limits)
            {
                // A clone starts with its source's limits; the class's replace those it names.
                volume = await slabd.Volumes.UpdateAsync(new V1.UpdateVolumeRequest { Volume = volume.Id, Limits = limits }, SlabdApi.Options(context)).ConfigureAwait(false);
            }

            return volume;
        }
        catch
        {
            try
            {
                await slabd.Volumes.DeleteAsync(new V1.DeleteVolumeRequest { Volume = volume.Id }, SlabdApi.Options(context)).ConfigureAwait(false);
            }
            catch (RpcException)
            {
                // The first failure is the one to report; a retry finds the leftover by name and says it differs.
            }

            throw;
        }
    }

    /// <summary>A repeat of CreateVolume must ask for what exists; else ALREADY_EXISTS naming the difference.</summary>
    private static void RequireCompatible(V1.Volume existing, CreateVolumeRequest request, VolumeParameters parameters, string fs, ContentSource? source)
    {
        string? difference =
            !CapacityRanges.Admits(request.CapacityRange, (long)existing.Spec.SizeBytes) ? $"its size is {existing.Spec.SizeBytes} bytes, outside the requested capacity range"
            : !string.Equals(FsOf(existing), fs, StringComparison.Ordinal) ? $"its filesystem is {FsOf(existing)}, not {fs}"
            : (parameters.Repl ?? ReplOf(existing)) != ReplOf(existing) ? $"it has repl {ReplOf(existing)}, not {parameters.Repl}"
            : parameters.IoPriority is { } p && existing.Spec.IoPriority != V1.IoPriority.Unspecified && p != existing.Spec.IoPriority ? $"its io_priority is {existing.Spec.IoPriority}, not {p}"
            : !string.Equals(existing.Source, source?.Reference ?? "", StringComparison.Ordinal) ? (existing.Source.Length == 0 ? "it was not made from a source" : $"it was made from {existing.Source}")
            : parameters.Labels.Any(l => !existing.Spec.Labels.TryGetValue(l.Key, out var v) || v != l.Value) ? "its labels differ"
            : null;
        if (difference is not null)
            throw CsiException.AlreadyExists($"volume '{existing.Name}' already exists and {difference}; use another name or the same parameters");
    }

    /// <summary>The volume's filesystem: "none" for block capabilities, else the capability's fs_type or parameter fs (ext4 by default).</summary>
    private static (string Fs, bool Explicit) ResolveFs(IReadOnlyCollection<VolumeCapability> capabilities, VolumeParameters parameters)
    {
        var block = capabilities.Count(VolumeCapabilities.IsBlock);
        if (block > 0 && block < capabilities.Count)
            throw CsiException.InvalidArgument("volume_capabilities mix block and mount; a Slab volume is one or the other");
        if (block > 0)
        {
            return parameters.Fs is null or "none"
                ? ("none", true)
                : throw CsiException.InvalidArgument($"parameter fs {parameters.Fs} contradicts the block access type (a raw block volume has no filesystem)");
        }

        var fsTypes = capabilities.Select(c => c.Mount.FsType).Where(t => t.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        if (fsTypes.Count > 1)
            throw CsiException.InvalidArgument($"volume_capabilities ask for several filesystems ({string.Join(", ", fsTypes)})");
        var fromCapability = fsTypes.Count == 1 ? fsTypes[0] : null;
        if (parameters.Fs == "none")
            throw CsiException.InvalidArgument("parameter fs none needs the block access type; a mount needs ext4 or xfs");
        if (fromCapability is not null && parameters.Fs is not null && fromCapability != parameters.Fs)
            throw CsiException.InvalidArgument($"fs_type {fromCapability} contradicts parameter fs {parameters.Fs}");
        var fs = fromCapability ?? parameters.Fs;
        return (fs ?? "ext4", fs is not null);
    }

    private static string FsOf(V1.Volume volume) => string.IsNullOrEmpty(volume.Spec?.Fs) ? "ext4" : volume.Spec.Fs;

    private static uint ReplOf(V1.Volume volume) => volume.Spec is { Repl: > 0 } spec ? spec.Repl : 1;

    public override async Task<DeleteVolumeResponse> DeleteVolume(DeleteVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var volume = await slabd.FindVolumeByIdAsync(request.VolumeId, context).ConfigureAwait(false);
        if (volume is null)
            return new DeleteVolumeResponse(); // gone already (or never was): success, as the spec says
        if (volume.SnapshotCount > 0)
            throw CsiException.FailedPrecondition($"volume {volume.Id} has {volume.SnapshotCount} snapshot(s); delete them (their VolumeSnapshots) first");
        try
        {
            await slabd.Volumes.DeleteAsync(new V1.DeleteVolumeRequest { Volume = volume.Id }, SlabdApi.Options(context)).ConfigureAwait(false);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
        {
            return new DeleteVolumeResponse();
        }

        LogDeleted(logger, volume.Id);
        return new DeleteVolumeResponse();
    }

    public override async Task<ValidateVolumeCapabilitiesResponse> ValidateVolumeCapabilities(ValidateVolumeCapabilitiesRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        if (request.VolumeCapabilities.Count == 0)
            throw CsiException.Missing("volume_capabilities");
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var fs = FsOf(volume);
        foreach (var capability in request.VolumeCapabilities)
        {
            var why = VolumeCapabilities.Unsupported(capability)
                ?? (capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Mount && fs == "none" ? "the volume has no filesystem; use the block access type"
                : capability.AccessTypeCase == VolumeCapability.AccessTypeOneofCase.Mount && capability.Mount.FsType.Length > 0 && capability.Mount.FsType != fs ? $"the volume's filesystem is {fs}, not {capability.Mount.FsType}"
                : null);
            if (why is not null)
                return new ValidateVolumeCapabilitiesResponse { Message = why };
        }

        try
        {
            _ = VolumeParameters.Parse(request.Parameters, request.MutableParameters);
        }
        catch (CsiException ex)
        {
            return new ValidateVolumeCapabilitiesResponse { Message = ex.Message };
        }

        var confirmed = new ValidateVolumeCapabilitiesResponse.Types.Confirmed();
        confirmed.VolumeCapabilities.Add(request.VolumeCapabilities);
        confirmed.VolumeContext.Add(request.VolumeContext);
        confirmed.Parameters.Add(request.Parameters);
        confirmed.MutableParameters.Add(request.MutableParameters);
        return new ValidateVolumeCapabilitiesResponse { Confirmed = confirmed };
    }

    public override async Task<ListVolumesResponse> ListVolumes(ListVolumesRequest request, ServerCallContext context)
    {
        var all = await slabd.Volumes.EnumerateAsync(new V1.EnumerateVolumesRequest(), SlabdApi.Options(context)).ConfigureAwait(false);
        var ordered = all.Volumes.OrderBy(v => v.Id, StringComparer.Ordinal).ToList();
        var (page, next) = PageTokens.Page(ordered, v => v.Id, request.StartingToken, request.MaxEntries);
        var nodes = await ListNodesAsync(context).ConfigureAwait(false);
        var response = new ListVolumesResponse { NextToken = next };
        foreach (var volume in page)
        {
            response.Entries.Add(new ListVolumesResponse.Types.Entry
            {
                Volume = ToCsi(volume, nodes),
                Status = new ListVolumesResponse.Types.VolumeStatus { VolumeCondition = ConditionOf(volume) },
            });
        }

        return response;
    }

    public override async Task<ControllerGetVolumeResponse> ControllerGetVolume(ControllerGetVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var nodes = await ListNodesAsync(context).ConfigureAwait(false);
        return new ControllerGetVolumeResponse
        {
            Volume = ToCsi(volume, nodes),
            Status = new ControllerGetVolumeResponse.Types.VolumeStatus { VolumeCondition = ConditionOf(volume) },
        };
    }

    public override async Task<ControllerExpandVolumeResponse> ControllerExpandVolume(ControllerExpandVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        if (request.CapacityRange is null)
            throw CsiException.Missing("capacity_range");
        if (request.VolumeCapability is { } capability && VolumeCapabilities.Unsupported(capability) is { } why)
            throw CsiException.InvalidArgument(why);
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        var current = (long)volume.Spec.SizeBytes;
        var nodeExpansion = request.VolumeCapability is { } c ? !VolumeCapabilities.IsBlock(c) : FsOf(volume) != "none";
        if (request.CapacityRange.LimitBytes > 0 && current > request.CapacityRange.LimitBytes)
            throw CsiException.OutOfRange($"volume {volume.Id} is {current} bytes already, more than limit_bytes {request.CapacityRange.LimitBytes}; volumes do not shrink");
        var size = CapacityRanges.Resolve(request.CapacityRange);
        if (size > current)
        {
            volume = await slabd.Volumes.UpdateAsync(new V1.UpdateVolumeRequest { Volume = volume.Id, SizeBytes = (ulong)size }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
            LogExpanded(logger, volume.Id, size);
        }

        return new ControllerExpandVolumeResponse { CapacityBytes = (long)volume.Spec.SizeBytes, NodeExpansionRequired = nodeExpansion };
    }

    public override async Task<ControllerModifyVolumeResponse> ControllerModifyVolume(ControllerModifyVolumeRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0)
            throw CsiException.Missing("volume_id");
        var changes = VolumeParameters.ParseMutable(request.MutableParameters);
        var volume = await slabd.RequireVolumeAsync(request.VolumeId, context).ConfigureAwait(false);
        if (changes.IoPriority is { } priority && priority != volume.Spec.IoPriority && volume.Spec.IoPriority != V1.IoPriority.Unspecified)
        {
            throw CsiException.InvalidArgument(
                $"io_priority chooses the pools a volume's replicas are placed on; moving volume {volume.Id} from {volume.Spec.IoPriority} to {priority} pools is not supported yet (create a volume with the new class and copy)");
        }

        if (changes.Repl is { } repl && repl != ReplOf(volume))
        {
            var from = ReplOf(volume);
            await slabd.Volumes.HaUpdateAsync(new V1.HaUpdateVolumeRequest { Volume = volume.Id, Repl = repl }, SlabdApi.Options(context, SlabdApi.LongDeadline)).ConfigureAwait(false);
            LogReplChanged(logger, volume.Id, from, repl);
        }

        if (changes.Limits is { } limits)
        {
            // Online: the controller where the volume is attached takes them at once.
            await slabd.Volumes.UpdateAsync(new V1.UpdateVolumeRequest { Volume = volume.Id, Limits = limits }, SlabdApi.Options(context)).ConfigureAwait(false);
        }

        return new ControllerModifyVolumeResponse();
    }

    /// <summary>Abnormal while the volume is not "up" or a replica is not in sync, with what is wrong.</summary>
    internal static VolumeCondition ConditionOf(V1.Volume volume)
    {
        var problems = new List<string>();
        if (volume.State is { Length: > 0 } state && state != "up")
            problems.Add($"volume is {state}");
        foreach (var replica in volume.Replicas)
        {
            var where = replica.NodeName.Length > 0 ? replica.NodeName : replica.NodeId;
            if (replica.State != "in-sync")
                problems.Add($"replica on {where} is {replica.State}");
            else if (!replica.NodeOnline)
                problems.Add($"node {where} of an in-sync replica is offline");
        }

        return problems.Count == 0
            ? new VolumeCondition { Abnormal = false, Message = "healthy: every replica in sync" }
            : new VolumeCondition { Abnormal = true, Message = string.Join("; ", problems) };
    }
}
