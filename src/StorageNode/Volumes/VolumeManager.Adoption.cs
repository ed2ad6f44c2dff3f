using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Slab.Common;
using Slab.Host;
using Slab.Store;

namespace Slab.Volumes;

public sealed partial class VolumeManager
{
    /// <summary>Attachments an earlier slabd left that outlive it, by volume name, until adopted or abandoned.</summary>
    private readonly ConcurrentDictionary<string, AttachedDevice> _survivors = new(StringComparer.Ordinal);

    /// <summary>
    /// Offers the attachments start-up recovery kept (<see cref="AttachmentRecovery.Kept"/>) for
    /// <see cref="AdoptSurvivorsAsync"/>. Until adopted, the attach socket refuses their
    /// reconnections (their I/O waits in the relay).
    /// </summary>
    public void OfferSurvivors(IEnumerable<AttachedDevice> kept)
    {
        foreach (var device in kept)
        {
            _survivors[device.VolumeName] = device;
        }
    }

    /// <summary>Whether attachments an earlier slabd left wait for <see cref="AdoptSurvivorsAsync"/>.</summary>
    public bool HasSurvivors => !_survivors.IsEmpty;

    /// <summary>Whether the attachment of <paramref name="volumeName"/> an earlier slabd left waits to be adopted.</summary>
    public bool IsSurvivor(string volumeName) => _survivors.ContainsKey(volumeName);

    /// <summary>
    /// Adopts the attachments an earlier slabd left: each whose volume still exists and that
    /// <paramref name="refusal"/> does not refuse becomes this daemon's attachment, with the mounts
    /// it had (its relay reconnects at the next retry, within a second); each other one is abandoned:
    /// its mounts lazily unmounted and its device removed, since its writes must not reach the volume
    /// any more. One whose volume cannot be looked up now (the cluster is not reachable) stays
    /// offered for the next call. Returns how many stay.
    /// </summary>
    /// <param name="refusal">
    /// Why the volume must not be adopted here (in a cluster: another node has it attached now), or
    /// null to adopt it; null to adopt every volume that exists (a single node).
    /// </param>
    public async Task<int> AdoptSurvivorsAsync(Func<VolumeRecord, string?>? refusal, CancellationToken cancellationToken)
    {
        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var (name, device) in _survivors)
            {
                VolumeRecord? volume;
                try
                {
                    volume = await RequireForAttachAsync(name, cancellationToken).ConfigureAwait(false);
                }
                catch (SlabException e) when (e.Code == SlabErrorCode.NotFound)
                {
                    volume = null;
                }
                catch (SlabException e)
                {
                    LogSurvivorDeferred(_logger, name, e.Message);
                    continue;
                }

                var reason = volume is null ? "its volume no longer exists" : refusal?.Invoke(volume);
                if (reason is not null)
                {
                    var removal = await _attacher.AbandonAsync(name, CancellationToken.None).ConfigureAwait(false);
                    LogSurvivorAbandoned(_logger, name, device.DevicePath, reason, string.Join("; ", removal.Actions));
                    if (volume is not null)
                    {
                        ForgetRemote(volume.Id);
                    }

                    _survivors.TryRemove(name, out _);
                    continue;
                }

                SetAttachment(volume!.Id, new AttachmentInfo(_options.NodeId, _options.NodeName, device.DevicePath, device.MethodName, [.. device.MountPaths], device.AttachedAt));
                _survivors.TryRemove(name, out _);
                var mounts = string.Join(", ", device.MountPaths);
                LogSurvivorAdopted(_logger, name, device.DevicePath, mounts);
                if (volume.SizeBytes > device.SizeBytes)
                {
                    // The volume grew while no slabd was here to grow the device.
                    try
                    {
                        await _attacher.ResizeAsync(name, volume.SizeBytes, cancellationToken).ConfigureAwait(false);
                    }
                    catch (HostAttachException e)
                    {
                        LogSurvivorNotGrown(_logger, name, e.Message);
                    }
                }
            }

            return _survivors.Count;
        }
        finally
        {
            _attachLock.Release();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name}: adopted its attachment {Device} left by the previous slabd (mounted at [{MountPaths}]); its I/O resumes")]
    private static partial void LogSurvivorAdopted(ILogger logger, string name, string device, string mountPaths);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Name}: removed its attachment {Device} left by the previous slabd: {Reason} ({Actions})")]
    private static partial void LogSurvivorAbandoned(ILogger logger, string name, string device, string reason, string actions);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Name}: its attachment left by the previous slabd waits to be adopted: {Reason}")]
    private static partial void LogSurvivorDeferred(ILogger logger, string name, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Name}: the adopted device could not follow the volume's size: {Reason}")]
    private static partial void LogSurvivorNotGrown(ILogger logger, string name, string reason);
}
