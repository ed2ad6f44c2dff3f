using System.Collections.Concurrent;
using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Slab.Common;
using Slab.Host;

namespace Slab.Volumes;

public sealed partial class VolumeManager
{
    private readonly IBlockDeviceAttacher _attacher;
    private readonly IFilesystemManager _filesystems;
    private readonly VolumeManagerOptions _options;
    private readonly SemaphoreSlim _attachLock = new(1, 1);
    private readonly Lock _attachmentsLock = new();
    private ImmutableDictionary<string, AttachmentInfo> _attachments = ImmutableDictionary<string, AttachmentInfo>.Empty;

    /// <summary>Volumes whose device is being made now (its NBD connection arrives before the attachment is recorded), by id.</summary>
    private readonly ConcurrentDictionary<string, byte> _attachingHere = new(StringComparer.Ordinal);

    /// <summary>Number of volumes attached on this host now.</summary>
    public int AttachedCount => Volatile.Read(ref _attachments).Count;


    public AttachmentInfo? GetAttachment(string volumeId)
    {
        lock (_attachmentsLock)
        {
            return _attachments.GetValueOrDefault(volumeId);
        }
    }

    /// <summary>Attaches the volume as a block device on this host; idempotent (returns the attachment).</summary>
    public async Task<AttachmentInfo> AttachAsync(string volumeReference, CancellationToken cancellationToken)
    {
        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await AttachLockedAsync(await RequireForAttachAsync(volumeReference, cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _attachLock.Release();
        }
    }

    /// <summary>Detaches the volume; refused while it is mounted.</summary>
    public async Task DetachAsync(string volumeReference, CancellationToken cancellationToken)
    {
        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var volume = FindLocalOrAttached(volumeReference) ?? Require(volumeReference);
            var attachment = GetAttachment(volume.Id)
                ?? throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is not attached");
            if (attachment.MountPaths.Count > 0)
            {
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is mounted at {string.Join(", ", attachment.MountPaths)}; unmount it first");
            }

            await HostCallAsync(volume.Name, () => _attacher.DetachAsync(volume.Name, cancellationToken)).ConfigureAwait(false);
            SetAttachment(volume.Id, null);
            ForgetRemote(volume.Id);
            LogDetached(_logger, volume.Name);
        }
        finally
        {
            _attachLock.Release();
        }
    }

    /// <summary>
    /// Mounts the volume at <paramref name="path"/>, attaching it first when needed and formatting it
    /// with its filesystem on first use, with mount(8) <paramref name="options"/> (empty = defaults;
    /// refused when malformed). A repeat at a path the volume is already mounted at is a no-op (its
    /// options are not compared). Returns the device and the filesystem.
    /// </summary>
    public async Task<(string Device, string Fs)> MountAsync(string volumeReference, string path, IReadOnlyList<string> options, CancellationToken cancellationToken)
    {
        var mountPath = ValidateMountPath(path);
        if (MountOptions.Validate(options) is { } invalid)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, invalid);
        }

        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var volume = await RequireForAttachAsync(volumeReference, cancellationToken).ConfigureAwait(false);
            if (volume.Fs == "none")
            {
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' has no filesystem (--fs none); attach it and use the block device");
            }

            var attachment = GetAttachment(volume.Id);
            if (attachment is not null && attachment.MountPaths.Contains(mountPath))
            {
                return (attachment.DevicePath, volume.Fs);
            }

            if (MountTable.IsMountPoint(mountPath))
            {
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"{mountPath} is already a mount point; choose another path or unmount it");
            }

            var attachedHere = attachment is null;
            attachment ??= await AttachLockedAsync(volume, cancellationToken).ConfigureAwait(false);
            try
            {
                var existing = await HostCallAsync(volume.Name, () => _filesystems.ProbeAsync(attachment.DevicePath, cancellationToken)).ConfigureAwait(false);
                var fs = volume.Fs;
                if (existing is not null and not ("ext4" or "xfs"))
                {
                    throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' carries a {existing} signature, which slabd does not mount; attach it and use the block device");
                }

                if (existing is null)
                {
                    if (volume.Formatted)
                    {
                        throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' was formatted with {volume.Fs} but carries no filesystem now; refusing to format it again");
                    }

                    LogFormatting(_logger, volume.Name, fs);
                    await HostCallAsync(volume.Name, () => _filesystems.FormatAsync(attachment.DevicePath, ToFilesystemType(fs), cancellationToken)).ConfigureAwait(false);
                }
                else
                {
                    // A clone, a restore or the user may have put another filesystem there: mount what is there.
                    fs = existing;
                }

                if (existing is not null && volume.FilesystemGrowPending)
                {
                    // The volume grew while its filesystem could not follow; grow it before mounting.
                    await HostCallAsync(volume.Name, () => _filesystems.GrowFilesystemAsync(attachment.DevicePath, null, ToFilesystemType(fs), cancellationToken)).ConfigureAwait(false);
                }

                await HostCallAsync(volume.Name, () => _filesystems.MountAsync(attachment.DevicePath, mountPath, ToFilesystemType(fs), options, cancellationToken)).ConfigureAwait(false);
                if (!volume.Formatted || volume.FilesystemGrowPending)
                {
                    await SaveFlagsAsync(volume with { Formatted = true, FilesystemGrowPending = false }, cancellationToken).ConfigureAwait(false);
                }

                await SetMountsAsync(volume.Name, volume.Id, attachment with { MountPaths = attachment.MountPaths.Add(mountPath) }).ConfigureAwait(false);
                LogMounted(_logger, volume.Name, mountPath);
                return (attachment.DevicePath, fs);
            }
            catch when (attachedHere)
            {
                await DetachQuietlyAsync(volume.Name, volume.Id).ConfigureAwait(false);
                throw;
            }
        }
        finally
        {
            _attachLock.Release();
        }
    }

    public async Task UnmountAsync(string volumeReference, string path, CancellationToken cancellationToken)
    {
        var mountPath = ValidateMountPath(path);
        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var volume = FindLocalOrAttached(volumeReference) ?? Require(volumeReference);
            var attachment = GetAttachment(volume.Id);
            if (attachment is null || !attachment.MountPaths.Contains(mountPath))
            {
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is not mounted at {mountPath}");
            }

            await HostCallAsync(volume.Name, () => _filesystems.UnmountAsync(mountPath, cancellationToken)).ConfigureAwait(false);
            await SetMountsAsync(volume.Name, volume.Id, attachment with { MountPaths = attachment.MountPaths.Remove(mountPath) }).ConfigureAwait(false);
            LogUnmounted(_logger, volume.Name, mountPath);
        }
        finally
        {
            _attachLock.Release();
        }
    }

    /// <summary>
    /// Unmounts and detaches everything this daemon attached (shutdown). Failures are logged. With
    /// <see cref="VolumeManagerOptions.KeepAttachments"/> nothing is undone: the devices wait for the
    /// next start, which adopts them.
    /// </summary>
    internal async Task DetachAllAsync(CancellationToken cancellationToken)
    {
        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_options.KeepAttachments)
            {
                if (!_attachments.IsEmpty)
                {
                    LogAttachmentsKept(_logger, _attachments.Count);
                }

                return;
            }

            foreach (var (volumeId, attachment) in _attachments)
            {
                foreach (var mountPath in attachment.MountPaths)
                {
                    try
                    {
                        await _filesystems.UnmountAsync(mountPath, cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is HostAttachException or ExternalCommandException)
                    {
                        LogShutdownStep(_logger, $"unmount {mountPath}", ex.Message);
                    }
                }

                var name = FindLocalOrAttached(volumeId)?.Name ?? volumeId;
                await DetachQuietlyAsync(name, volumeId).ConfigureAwait(false);
            }
        }
        finally
        {
            _attachLock.Release();
        }
    }

    private async Task<AttachmentInfo> AttachLockedAsync(Store.VolumeRecord volume, CancellationToken cancellationToken)
    {
        if (GetAttachment(volume.Id) is { } existing)
        {
            return existing;
        }

        if (_survivors.TryGetValue(volume.Name, out var survivor))
        {
            throw new SlabException(
                SlabErrorCode.Unavailable,
                $"volume '{volume.Name}' is still attached here as {survivor.DevicePath} from before slabd restarted; it is adopted once this node has caught up with the cluster state: try again in a few seconds");
        }

        lock (_openLock)
        {
            ThrowIfExclusive(volume);
        }

        AttachedDevice device;
        _attachingHere[volume.Id] = 0;
        try
        {
            device = await HostCallAsync(
                volume.Name,
                () => _attacher.AttachAsync(new AttachSpec(volume.Name, _options.AttachSocketPath, volume.Name, volume.SizeBytes), cancellationToken)).ConfigureAwait(false);
        }
        catch
        {
            _attachingHere.TryRemove(volume.Id, out _);
            throw;
        }

        var attachment = new AttachmentInfo(_options.NodeId, _options.NodeName, device.DevicePath, device.MethodName, [], _time.GetUtcNow());
        SetAttachment(volume.Id, attachment);
        _attachingHere.TryRemove(volume.Id, out _);
        LogAttached(_logger, volume.Name, device.DevicePath, device.MethodName);
        return attachment;
    }

    /// <summary>
    /// Makes an attached device follow a grown volume, then the filesystems mounted on it. Where a
    /// filesystem cannot grow while mounted (ext4 without CAP_SYS_RESOURCE), the volume is marked so
    /// that the next mount grows it first; the volume itself has grown either way.
    /// </summary>
    private async Task<Store.VolumeRecord> GrowAttachedDeviceAsync(Store.VolumeRecord volume, CancellationToken cancellationToken)
    {
        await _attachLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (GetAttachment(volume.Id) is not { } attachment)
            {
                return volume;
            }

            await HostCallAsync(volume.Name, () => _attacher.ResizeAsync(volume.Name, volume.SizeBytes, cancellationToken)).ConfigureAwait(false);
            foreach (var mountPath in attachment.MountPaths)
            {
                var fs = await HostCallAsync(volume.Name, () => _filesystems.ProbeAsync(attachment.DevicePath, cancellationToken)).ConfigureAwait(false) ?? volume.Fs;
                try
                {
                    await _filesystems.GrowFilesystemAsync(attachment.DevicePath, mountPath, ToFilesystemType(fs), cancellationToken).ConfigureAwait(false);
                }
                catch (HostAttachException ex) when (ex.Error == HostAttachError.GrowUnsupported)
                {
                    LogFilesystemGrowDeferred(_logger, volume.Name, mountPath, ex.Message);
                    volume = await SaveFlagsAsync(volume with { FilesystemGrowPending = true }, cancellationToken).ConfigureAwait(false);
                }
            }

            return volume;
        }
        finally
        {
            _attachLock.Release();
        }
    }

    private static FilesystemType ToFilesystemType(string fs) => fs switch
    {
        "xfs" => FilesystemType.Xfs,
        "ext4" => FilesystemType.Ext4,
        _ => throw new SlabException(SlabErrorCode.FailedPrecondition, $"filesystem '{fs}' cannot be formatted or mounted by slabd; use ext4 or xfs"),
    };

    private async Task DetachQuietlyAsync(string volumeName, string volumeId)
    {
        try
        {
            await _attacher.DetachAsync(volumeName, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HostAttachException or ExternalCommandException)
        {
            LogShutdownStep(_logger, $"detach {volumeName}", ex.Message);
        }

        SetAttachment(volumeId, null);
        ForgetRemote(volumeId);
    }

    /// <summary>Records the attachment's new mounts here and with the host layer (for adoption after a restart); the latter is best effort.</summary>
    private async Task SetMountsAsync(string volumeName, string volumeId, AttachmentInfo attachment)
    {
        SetAttachment(volumeId, attachment);
        try
        {
            await _attacher.RecordMountsAsync(volumeName, attachment.MountPaths, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HostAttachException or IOException or UnauthorizedAccessException)
        {
            LogMountsNotRecorded(_logger, volumeName, ex.Message);
        }
    }

    private void SetAttachment(string volumeId, AttachmentInfo? attachment)
    {
        lock (_attachmentsLock)
        {
            _attachments = attachment is null ? _attachments.Remove(volumeId) : _attachments.SetItem(volumeId, attachment);
        }
    }

    private static string ValidateMountPath(string path)
    {
        if (string.IsNullOrWhiteSpace(path) || !Path.IsPathRooted(path))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"mount path '{path}' must be an absolute path");
        }

        var full = Path.GetFullPath(path).TrimEnd('/');
        return full.Length == 0 ? throw new SlabException(SlabErrorCode.InvalidArgument, "cannot mount a volume on /") : full;
    }

    /// <summary>Runs a host-layer call, turning its typed failures into control-plane errors.</summary>
    private static async Task<T> HostCallAsync<T>(string volumeName, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (HostAttachException ex)
        {
            throw new SlabException(ToErrorCode(ex.Error), $"volume '{volumeName}': {ex.Message}", ex);
        }
        catch (ExternalCommandException ex)
        {
            throw new SlabException(SlabErrorCode.Internal, $"volume '{volumeName}': {ex.Message}", ex);
        }
    }

    private static Task HostCallAsync(string volumeName, Func<Task> call)
        => HostCallAsync(volumeName, async () =>
        {
            await call().ConfigureAwait(false);
            return true;
        });

    private static SlabErrorCode ToErrorCode(HostAttachError error) => error switch
    {
        HostAttachError.AlreadyAttached or HostAttachError.NotAttached or HostAttachError.Busy => SlabErrorCode.FailedPrecondition,
        HostAttachError.ToolMissing or HostAttachError.GrowUnsupported => SlabErrorCode.FailedPrecondition,
        HostAttachError.InvalidArgument => SlabErrorCode.InvalidArgument,
        _ => SlabErrorCode.Internal,
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} attached at {Device} ({Method})")]
    private static partial void LogAttached(ILogger logger, string name, string device, string method);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} detached")]
    private static partial void LogDetached(ILogger logger, string name);

    [LoggerMessage(Level = LogLevel.Information, Message = "Formatting volume {Name} with {Fs}")]
    private static partial void LogFormatting(ILogger logger, string name, string fs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} mounted at {Path}")]
    private static partial void LogMounted(ILogger logger, string name, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} unmounted from {Path}")]
    private static partial void LogUnmounted(ILogger logger, string name, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Name} grew, but its filesystem at {Path} cannot grow while mounted here ({Reason}); it grows at the next mount")]
    private static partial void LogFilesystemGrowDeferred(ILogger logger, string name, string path, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutdown: {Count} attachments stay (--keep-attachments); their I/O waits for the next start, which adopts them")]
    private static partial void LogAttachmentsKept(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Name}: its mounts could not be recorded for a restart ({Reason}); if slabd restarts it is adopted without them")]
    private static partial void LogMountsNotRecorded(ILogger logger, string name, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown: {Step} failed: {Reason}")]
    private static partial void LogShutdownStep(ILogger logger, string step, string reason);
}
