using System.Runtime.Versioning;
using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

using Slab.Common;

namespace Slab.Host;

/// <summary>
/// What both attach methods share: the per-volume lock, the state directory, the busy check before
/// detach and start-up recovery.
/// </summary>
[SupportedOSPlatform("linux")]
public abstract class AttacherBase : IBlockDeviceAttacher
{
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _locks = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _ownAttachments = new(StringComparer.Ordinal);

    private protected AttacherBase(HostOptions options, ILogger logger)
    {
        Options = options;
        Logger = logger;
        Layout = new AttachmentLayout(options);
        Cleaner = new AttachmentCleaner(Layout, options, logger);
    }

    public abstract AttachMethod Method { get; }

    private protected HostOptions Options { get; }

    private protected ILogger Logger { get; }

    private protected AttachmentLayout Layout { get; }

    private protected AttachmentCleaner Cleaner { get; }

    public async Task<AttachedDevice> AttachAsync(AttachSpec spec, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        AttachmentLayout.ValidateVolumeName(spec.VolumeName);
        if (spec.DeviceSizeBytes <= 0 || spec.DeviceSizeBytes % 512 != 0)
        {
            throw Invalid(spec.VolumeName, $"device size {spec.DeviceSizeBytes} is not a positive multiple of 512 bytes");
        }

        if (string.IsNullOrEmpty(spec.NbdUnixSocket) || spec.ExportName is null)
        {
            throw Invalid(spec.VolumeName, "the NBD socket path and export name are required (the export name may be empty: the default export)");
        }

        using var held = await LockAsync(spec.VolumeName, cancellationToken);
        var directory = Layout.DirectoryOf(spec.VolumeName);
        var existing = AttachmentLayout.TryRead(Layout.StateFileOf(spec.VolumeName));
        if (existing is not null)
        {
            throw new HostAttachException(HostAttachError.AlreadyAttached,
                $"volume '{spec.VolumeName}' is already attached on this host as {existing.DevicePath} ({existing.Method.ToWireName()})")
            {
                VolumeName = spec.VolumeName,
            };
        }

        if (Directory.Exists(directory))
        {
            // Debris of an attach that never finished (no state file): clear it first.
            var removal = await Cleaner.RemoveAsync(spec.VolumeName, knownPid: null, CancellationToken.None);
            if (!removal.Complete)
            {
                throw new HostAttachException(HostAttachError.DeviceFailed,
                    $"a half-made attachment of '{spec.VolumeName}' is in the way and could not be removed: {string.Join("; ", removal.Actions)}")
                {
                    VolumeName = spec.VolumeName,
                };
            }
        }

        var attached = await AttachCoreAsync(spec, cancellationToken);
        _ownAttachments[spec.VolumeName] = 0;
        HostLog.Attached(Logger, attached.VolumeName, attached.DevicePath, attached.MethodName, attached.SizeBytes, attached.DirectIo);
        return attached;
    }

    public async Task<AttachedDevice> ResizeAsync(string volumeName, long newSizeBytes, CancellationToken cancellationToken)
    {
        AttachmentLayout.ValidateVolumeName(volumeName);
        using var held = await LockAsync(volumeName, cancellationToken);
        var state = ReadState(volumeName);
        if (newSizeBytes <= 0 || newSizeBytes % 512 != 0)
        {
            throw Invalid(volumeName, $"size {newSizeBytes} is not a positive multiple of 512 bytes");
        }

        if (newSizeBytes < state.SizeBytes)
        {
            throw Invalid(volumeName, $"cannot shrink '{volumeName}' from {state.SizeBytes} to {newSizeBytes} bytes");
        }

        if (newSizeBytes == state.SizeBytes)
        {
            return state.ToAttachedDevice(Layout.DirectoryOf(volumeName));
        }

        var resized = await ResizeCoreAsync(state, newSizeBytes, cancellationToken);
        AttachmentLayout.Write(Layout.StateFileOf(volumeName), resized);
        HostLog.Resized(Logger, volumeName, state.DevicePath, state.SizeBytes, newSizeBytes);
        return resized.ToAttachedDevice(Layout.DirectoryOf(volumeName));
    }

    public async Task<AttachedDevice?> GetAsync(string volumeName, CancellationToken cancellationToken)
    {
        AttachmentLayout.ValidateVolumeName(volumeName);
        using var held = await LockAsync(volumeName, cancellationToken);
        return AttachmentLayout.TryRead(Layout.StateFileOf(volumeName))?.ToAttachedDevice(Layout.DirectoryOf(volumeName));
    }

    public async Task DetachAsync(string volumeName, CancellationToken cancellationToken)
    {
        AttachmentLayout.ValidateVolumeName(volumeName);
        using var held = await LockAsync(volumeName, cancellationToken);
        var state = AttachmentLayout.TryRead(Layout.StateFileOf(volumeName));
        if (state is null)
        {
            if (!Directory.Exists(Layout.DirectoryOf(volumeName)))
            {
                throw new HostAttachException(HostAttachError.NotAttached, $"volume '{volumeName}' is not attached on this host") { VolumeName = volumeName };
            }

            // A half-made attachment: nothing can be mounted on it, so remove it like a leftover.
            await Cleaner.RemoveAsync(volumeName, knownPid: null, cancellationToken);
            _ownAttachments.TryRemove(volumeName, out _);
            return;
        }

        if (IsDeviceOurs(state))
        {
            await WaitUntilReleasedAsync(volumeName, state.DevicePath, cancellationToken);
        }

        await DetachCoreAsync(state, cancellationToken);
        Directory.Delete(Layout.DirectoryOf(volumeName), recursive: true);
        _ownAttachments.TryRemove(volumeName, out _);
        HostLog.Detached(Logger, volumeName, state.DevicePath);
    }

    public async Task<AttachmentRecovery> RecoverAsync(CancellationToken cancellationToken)
    {
        var removed = new List<StaleAttachmentRemoval>();
        var kept = new List<AttachedDevice>();
        foreach (var volumeName in Layout.ListVolumes())
        {
            if (_ownAttachments.ContainsKey(volumeName))
            {
                continue;
            }

            using var held = await LockAsync(volumeName, cancellationToken);
            var state = AttachmentLayout.TryRead(Layout.StateFileOf(volumeName));
            if (state is not null && Options.ReconnectTimeout is not null && OutlivedDaemon(state))
            {
                _ownAttachments[volumeName] = 0;
                var device = state.ToAttachedDevice(Layout.DirectoryOf(volumeName));
                HostLog.Kept(Logger, volumeName, device.DevicePath, string.Join(", ", device.MountPaths));
                kept.Add(device);
                continue;
            }

            removed.Add(await Cleaner.RemoveAsync(volumeName, knownPid: null, cancellationToken));
        }

        Cleaner.RemoveOrphanRelaySockets(kept.Select(k => k.VolumeName).Concat(_ownAttachments.Keys));
        return new AttachmentRecovery(removed, kept);
    }

    public async Task<StaleAttachmentRemoval> AbandonAsync(string volumeName, CancellationToken cancellationToken)
    {
        AttachmentLayout.ValidateVolumeName(volumeName);
        using var held = await LockAsync(volumeName, cancellationToken);
        var removal = await Cleaner.RemoveAsync(volumeName, knownPid: null, cancellationToken);
        if (removal.Complete)
        {
            _ownAttachments.TryRemove(volumeName, out _);
        }

        return removal;
    }

    public async Task RecordMountsAsync(string volumeName, IReadOnlyList<string> mountPaths, CancellationToken cancellationToken)
    {
        AttachmentLayout.ValidateVolumeName(volumeName);
        using var held = await LockAsync(volumeName, cancellationToken);
        var state = ReadState(volumeName);
        AttachmentLayout.Write(Layout.StateFileOf(volumeName), state with { MountPaths = [.. mountPaths] });
    }

    /// <summary>
    /// Whether an attachment a previous slabd made is intact and was made to outlive it (its
    /// processes, FUSE file and device all still there). Only nbdfuse + loop attachments can.
    /// </summary>
    private protected virtual bool OutlivedDaemon(AttachmentState state) => false;

    /// <summary>Makes the device; undoes everything it made before throwing. The volume's lock is held.</summary>
    private protected abstract Task<AttachedDevice> AttachCoreAsync(AttachSpec spec, CancellationToken cancellationToken);

    /// <summary>Grows the live device; returns the state to persist. The volume's lock is held.</summary>
    private protected abstract Task<AttachmentState> ResizeCoreAsync(AttachmentState state, long newSizeBytes, CancellationToken cancellationToken);

    /// <summary>Removes the device and what backs it (not the directory); the device was checked not busy.</summary>
    private protected abstract Task DetachCoreAsync(AttachmentState state, CancellationToken cancellationToken);

    /// <summary>Whether <see cref="AttachmentState.DevicePath"/> is still this attachment's device (not released, not reused).</summary>
    private protected abstract bool IsDeviceOurs(AttachmentState state);

    private protected AttachmentState ReadState(string volumeName) =>
        AttachmentLayout.TryRead(Layout.StateFileOf(volumeName))
        ?? throw new HostAttachException(HostAttachError.NotAttached, $"volume '{volumeName}' is not attached on this host") { VolumeName = volumeName };

    private protected static HostAttachException Invalid(string volumeName, string message) =>
        new(HostAttachError.InvalidArgument, message) { VolumeName = volumeName };

    /// <summary>
    /// <see cref="ThrowIfBusy"/>, allowing an exclusive holder that is not a mount here a moment to let
    /// go: a filesystem unmounted just before releases its claim on the device asynchronously.
    /// </summary>
    private static async Task WaitUntilReleasedAsync(string volumeName, string device, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                ThrowIfBusy(volumeName, device);
                return;
            }
            catch (HostAttachException e) when (e.MountPoints.Count == 0 && attempt < ReleaseAttempts)
            {
                await Task.Delay(ReleasePause, cancellationToken);
            }
        }
    }

    private const int ReleaseAttempts = 20;

    private static readonly TimeSpan ReleasePause = TimeSpan.FromMilliseconds(100);

    /// <summary>Throws <see cref="HostAttachError.Busy"/> when the device is mounted (here) or held exclusively (anywhere).</summary>
    private static void ThrowIfBusy(string volumeName, string device)
    {
        var number = BlockSysfs.DeviceNumber(device);
        var mounts = number is { } n ? MountTable.MountPointsOf(n.Major, n.Minor) : [];
        if (mounts.Count > 0)
        {
            throw new HostAttachException(HostAttachError.Busy,
                $"volume '{volumeName}' ({device}) is mounted at {string.Join(", ", mounts)}; unmount it first")
            {
                VolumeName = volumeName,
                MountPoints = mounts,
            };
        }

        if (HostNative.IsHeldExclusively(device))
        {
            throw new HostAttachException(HostAttachError.Busy,
                $"volume '{volumeName}' ({device}) is in use (mounted in another mount namespace, or held by device-mapper or another exclusive user)")
            {
                VolumeName = volumeName,
            };
        }
    }

    private async Task<Releaser> LockAsync(string volumeName, CancellationToken cancellationToken)
    {
        var semaphore = _locks.GetOrAdd(volumeName, _ => new SemaphoreSlim(1, 1));
        await semaphore.WaitAsync(cancellationToken);
        return new Releaser(semaphore);
    }

    private readonly struct Releaser(SemaphoreSlim semaphore) : IDisposable
    {
        public void Dispose() => semaphore.Release();
    }
}
