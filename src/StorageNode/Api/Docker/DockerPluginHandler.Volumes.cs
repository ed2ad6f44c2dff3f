using System.Globalization;
using Slab.Common;
using V1 = Slab.Api.V1;

namespace Slab.Api.Docker;

public sealed partial class DockerPluginHandler
{
    /// <summary>
    /// Create: options and the inline spec are checked first (a bad one is refused even when the
    /// volume exists); a volume that exists already is left as it is (Docker creates before every
    /// use of a named volume, as PX: a no-op); <c>parent=</c> clones.
    /// </summary>
    private async Task<DockerReply> CreateAsync(CreateRequest request, CancellationToken cancellationToken)
    {
        var wanted = DockerVolumeOptions.Parse(request.Name, request.Opts);
        return await UnderVolumeLockAsync(wanted.Name, async () =>
        {
            if (await _api.FindAsync(wanted.Name, cancellationToken).ConfigureAwait(false) is not null)
            {
                LogCreateExisting(_logger, request.Name, wanted.Name);
                return NoError();
            }

            try
            {
                if (wanted.Parent is { } parent)
                {
                    await _api.CloneAsync(parent, wanted.Name, wanted.Labels, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await _api.CreateAsync(wanted.Name, wanted.Spec, cancellationToken).ConfigureAwait(false);
                }
            }
            catch (SlabException e) when (e.Code == SlabErrorCode.AlreadyExists)
            {
                // Made by someone else since we looked (slabctl, another node's Docker): it exists, as asked.
            }

            LogCreated(_logger, request.Name, wanted.Name, wanted.Parent ?? "");
            return NoError();
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Remove: refused while Docker has the volume mounted on this host; a volume that is gone already is removed.</summary>
    private async Task<DockerReply> RemoveAsync(NameRequest request, CancellationToken cancellationToken)
    {
        var name = DockerVolumeOptions.ResolveName(request.Name);
        return await UnderVolumeLockAsync(name, async () =>
        {
            var ids = _mounts.IdsOf(name);
            if (!ids.IsEmpty)
            {
                throw new SlabException(
                    SlabErrorCode.FailedPrecondition,
                    $"volume '{name}' is mounted by {ids.Count} container(s) on this host; stop or remove them first");
            }

            if (await _api.FindAsync(name, cancellationToken).ConfigureAwait(false) is null)
            {
                return NoError();
            }

            await _api.DeleteAsync(name, cancellationToken).ConfigureAwait(false);
            LogRemoved(_logger, name);
            return NoError();
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Path: the mount point while Docker has the volume mounted here, else empty.</summary>
    private DockerReply PathOf(NameRequest request)
    {
        var name = DockerVolumeOptions.ResolveName(request.Name);
        return Ok(new MountResponse(MountedPathOrEmpty(name)), DockerJson.Default.MountResponse);
    }

    /// <summary>Get: the volume under the name Docker asked for, with Slab's view of it as its Status.</summary>
    private async Task<DockerReply> GetAsync(NameRequest request, CancellationToken cancellationToken)
    {
        var name = DockerVolumeOptions.ResolveName(request.Name);
        var volume = await _api.FindAsync(name, cancellationToken).ConfigureAwait(false)
            ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{name}' does not exist");
        return Ok(new GetResponse(Describe(request.Name, volume, withStatus: true)), DockerJson.Default.GetResponse);
    }

    private async Task<DockerReply> ListAsync(CancellationToken cancellationToken)
    {
        var volumes = await _api.ListAsync(cancellationToken).ConfigureAwait(false);
        return Ok(new ListResponse([.. volumes.Select(v => Describe(v.Name, v, withStatus: false))]), DockerJson.Default.ListResponse);
    }

    private DockerVolume Describe(string dockerName, V1.Volume volume, bool withStatus) => new()
    {
        Name = dockerName,
        Mountpoint = MountedPathOrEmpty(volume.Name),
        CreatedAt = volume.CreatedUnixMs > 0
            ? DateTimeOffset.FromUnixTimeMilliseconds(volume.CreatedUnixMs).ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture)
            : null,
        Status = withStatus ? StatusOf(volume) : null,
    };

    private Dictionary<string, object> StatusOf(V1.Volume volume)
    {
        var status = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["id"] = volume.Id,
            ["name"] = volume.Name,
            ["size"] = Sizes.Human((long)volume.Spec.SizeBytes),
            ["sizeBytes"] = (long)volume.Spec.SizeBytes,
            ["repl"] = (int)Math.Max(1, volume.Spec.Repl),
            ["fs"] = volume.Spec.Fs.Length > 0 ? volume.Spec.Fs : "ext4",
            ["state"] = volume.State,
            ["dockerMounts"] = _mounts.IdsOf(volume.Name).Count,
        };
        if (volume.Attachment is { } attachment)
        {
            status["attachedOn"] = attachment.NodeName.Length > 0 ? attachment.NodeName : attachment.NodeId;
        }

        if (volume.Source.Length > 0)
        {
            status["parent"] = volume.Source;
        }

        if (volume.Spec.Labels.Count > 0)
        {
            status["labels"] = string.Join(";", volume.Spec.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
        }

        return status;
    }

    private string MountedPathOrEmpty(string volume)
    {
        var path = _options.MountPointOf(volume);
        return !_mounts.IdsOf(volume).IsEmpty && _isMountPoint(path) ? path : "";
    }
}
