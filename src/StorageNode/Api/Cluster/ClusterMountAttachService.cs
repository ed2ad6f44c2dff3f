using Grpc.Core;
using Slab.Cluster.Node;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api.Cluster;


/// <summary>
/// The MountAttach service on a cluster node: an attachment is first recorded in Raft (exclusive;
/// the leader lets a dead holder's attachment be taken over, bumping the epoch), then made on this
/// host — over the local replica, or over the replication protocol when the replica is elsewhere.
/// </summary>
public sealed class ClusterMountAttachService(ClusterRuntime runtime, VolumeManager volumes, ClusterVolumeOperations operations) : V1.MountAttach.MountAttachBase
{
    public override async Task<V1.AttachResponse> Attach(V1.AttachRequest request, ServerCallContext context)
    {
        var volume = Require(request.Volume);
        var attachment = await WithRecordedAttachmentAsync(volume, ct => volumes.AttachAsync(volume.Id, ct), context.CancellationToken).ConfigureAwait(false);
        return new V1.AttachResponse { DevicePath = attachment.DevicePath, Attachment = ProtoMapping.ToProto(attachment) };
    }

    public override async Task<V1.MountResponse> Mount(V1.MountRequest request, ServerCallContext context)
    {
        var volume = Require(request.Volume);
        var (device, fs) = await WithRecordedAttachmentAsync(volume, ct => volumes.MountAsync(volume.Id, request.Path, request.Options, ct), context.CancellationToken)
            .ConfigureAwait(false);
        return new V1.MountResponse { DevicePath = device, Path = request.Path, Fs = fs };
    }

    public override async Task<V1.UnmountResponse> Unmount(V1.UnmountRequest request, ServerCallContext context)
    {
        await volumes.UnmountAsync(Require(request.Volume).Id, request.Path, context.CancellationToken).ConfigureAwait(false);
        return new V1.UnmountResponse();
    }

    public override async Task<V1.DetachResponse> Detach(V1.DetachRequest request, ServerCallContext context)
    {
        var volume = Require(request.Volume);
        if (volumes.GetAttachment(volume.Id) is null && volume.Attachment is { Purpose: AttachPurpose.Resync })
        {
            return new V1.DetachResponse(); // not attached to a host: a node only resyncs it
        }

        if (volumes.GetAttachment(volume.Id) is null && volume.Attachment is { } recorded && recorded.NodeId != runtime.LocalNodeId)
        {
            var where = runtime.State.Current.Nodes.TryGetValue(recorded.NodeId, out var node) ? node.Name : recorded.NodeId;
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is attached on {where}, not on {runtime.Options.NodeName}; detach it there");
        }

        if (volumes.GetAttachment(volume.Id) is not null)
        {
            await volumes.DetachAsync(volume.Id, context.CancellationToken).ConfigureAwait(false);
        }

        if (volume.Attachment is not { } holder || holder.NodeId != runtime.LocalNodeId)
        {
            // Another node took the attachment over (this node's device was fenced) or none is
            // recorded: the local device was all there was to remove; the record is not this node's.
            return new V1.DetachResponse();
        }

        // If this fails (no quorum) the record stays; the reconciler clears it once the cluster is back.
        await runtime.ProposeOrThrowAsync(new DetachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId }, prepared: false, context.CancellationToken)
            .ConfigureAwait(false);
        return new V1.DetachResponse();
    }

    private async Task<T> WithRecordedAttachmentAsync<T>(VolumeInfo volume, Func<CancellationToken, Task<T>> attachHere, CancellationToken cancellationToken)
    {
        var alreadyHere = volumes.GetAttachment(volume.Id) is not null;
        using var attaching = runtime.BeginAttach(volume.Id);
        if (!alreadyHere)
        {
            await runtime.ProposeOrThrowAsync(new AttachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId }, prepared: true, cancellationToken)
                .ConfigureAwait(false);
        }

        try
        {
            return await attachHere(cancellationToken).ConfigureAwait(false);
        }
        catch when (!alreadyHere)
        {
            try
            {
                await runtime.ProposeOrThrowAsync(new DetachVolume { Volume = volume.Id, NodeId = runtime.LocalNodeId }, prepared: false, CancellationToken.None)
                    .ConfigureAwait(false);
            }
            catch (SlabException)
            {
                // The reconciler clears the record once the cluster is back.
            }

            throw;
        }
    }

    private VolumeInfo Require(string nameOrId) => operations.Require(nameOrId);
}
