using System.Collections.Immutable;
using Slab.Common;

namespace Slab.Api.Docker;

public sealed partial class DockerPluginHandler
{
    /// <summary>
    /// Mount: the first mount ID attaches the volume on this node (in cluster mode recorded in Raft:
    /// refused while another live node holds it, taken over from a dead one with an epoch bump),
    /// formats it on first use and mounts it at RUN/docker/volumes/NAME; later IDs share that mount.
    /// The ID is durable before the answer, so a restarted slabd still counts it.
    /// </summary>
    private async Task<DockerReply> MountAsync(MountRequest request, CancellationToken cancellationToken)
    {
        var name = DockerVolumeOptions.ResolveName(request.Name);
        var id = RequireId(request);
        return await UnderVolumeLockAsync(name, async () =>
        {
            var path = _options.MountPointOf(name);
            var ids = _mounts.IdsOf(name);
            var mountedNow = false;
            if (!_isMountPoint(path))
            {
                Directory.CreateDirectory(path);
                await _api.MountAsync(name, path, cancellationToken).ConfigureAwait(false);
                mountedNow = true;
            }

            try
            {
                _mounts.Set(name, ids.Add(id));
            }
            catch (IOException e) when (mountedNow)
            {
                await ReleaseQuietlyAsync(name, path).ConfigureAwait(false);
                throw new SlabException(SlabErrorCode.Internal, $"cannot record the mount of '{name}' in {_options.MountIdFile}: {e.Message}", e);
            }

            LogMounted(_logger, name, id, ids.Count + (ids.Contains(id) ? 0 : 1), path);
            return Ok(new MountResponse(path), DockerJson.Default.MountResponse);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Unmount: forgets the ID; the last one unmounts and detaches the volume. An ID slabd does not
    /// know (already unmounted) changes nothing, unless the volume is still mounted for Docker with no
    /// ID left (its IDs were lost), which is then undone.
    /// </summary>
    private async Task<DockerReply> UnmountAsync(MountRequest request, CancellationToken cancellationToken)
    {
        var name = DockerVolumeOptions.ResolveName(request.Name);
        var id = RequireId(request);
        return await UnderVolumeLockAsync(name, async () =>
        {
            var ids = _mounts.IdsOf(name);
            var left = ids.Remove(id);
            if (left.Count != ids.Count)
            {
                _mounts.Set(name, left);
            }
            else if (!left.IsEmpty)
            {
                return NoError();
            }

            LogUnmounted(_logger, name, id, left.Count);
            if (left.IsEmpty)
            {
                await ReleaseAsync(name, _options.MountPointOf(name), cancellationToken).ConfigureAwait(false);
            }

            return NoError();
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// After a restart: mounts again every volume Docker still holds mount IDs for (slabd's shutdown,
    /// or its crash recovery, undid the mounts), so the IDs' Unmounts and new containers find it where
    /// Docker expects. A volume that cannot be mounted keeps its IDs (the next Mount tries again) and
    /// is logged. Running containers keep what they had: their mounts of the old device do not come back.
    /// </summary>
    public async Task RestoreMountsAsync(CancellationToken cancellationToken)
    {
        foreach (var (name, ids) in _mounts.All)
        {
            try
            {
                await UnderVolumeLockAsync(name, async () =>
                {
                    var path = _options.MountPointOf(name);
                    if (!_isMountPoint(path))
                    {
                        Directory.CreateDirectory(path);
                        await _api.MountAsync(name, path, cancellationToken).ConfigureAwait(false);
                    }

                    LogRestored(_logger, name, ids.Count, path);
                    return true;
                }, cancellationToken).ConfigureAwait(false);
            }
            catch (SlabException e)
            {
                LogRestoreFailed(_logger, name, ids.Count, e.Message);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private static string RequireId(MountRequest request)
        => request.Id.Length > 0 ? request.Id : throw new SlabException(SlabErrorCode.InvalidArgument, "the mount ID is empty");

    /// <summary>
    /// Unmounts the volume's Docker mount and detaches it from this node. Not mounted there: nothing
    /// is Docker's to undo (an attachment without that mount is someone else's, e.g. slabctl host attach).
    /// </summary>
    private async Task ReleaseAsync(string name, string path, CancellationToken cancellationToken)
    {
        if (!_isMountPoint(path))
        {
            return;
        }

        await _api.UnmountAsync(name, path, cancellationToken).ConfigureAwait(false);
        try
        {
            await _api.DetachAsync(name, cancellationToken).ConfigureAwait(false);
        }
        catch (SlabException e) when (e.Code is SlabErrorCode.FailedPrecondition or SlabErrorCode.NotFound)
        {
            // Not attached here any more, or mounted elsewhere on this host by someone else
            // (slabctl host mount): Docker's part is undone; the rest is not ours to undo.
            LogDetachSkipped(_logger, name, e.Message);
        }
    }

    private async Task ReleaseQuietlyAsync(string name, string path)
    {
        try
        {
            await ReleaseAsync(name, path, CancellationToken.None).ConfigureAwait(false);
        }
        catch (SlabException e)
        {
            LogDetachSkipped(_logger, name, e.Message);
        }
    }
}
