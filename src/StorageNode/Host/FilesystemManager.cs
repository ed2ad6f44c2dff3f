using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

using Slab.Common;

namespace Slab.Host;

/// <summary>
/// <see cref="IFilesystemManager"/> over blkid, mkfs.ext4/mkfs.xfs, mount/umount, resize2fs and
/// xfs_growfs.
/// </summary>
public sealed class FilesystemManager(ILogger<FilesystemManager>? logger = null) : IFilesystemManager
{
    private const int CapSysResource = 24;
    private readonly ILogger _logger = logger ?? NullLogger<FilesystemManager>.Instance;

    public async Task<string?> ProbeAsync(string device, CancellationToken cancellationToken)
    {
        // -p: low-level probe of the device itself, not the (possibly stale) blkid cache.
        var result = await HostTools.RunAsync("blkid", ["-p", "-o", "export", device], cancellationToken);
        switch (result.ExitCode)
        {
            case 0:
                var values = result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(line => line.Split('=', 2))
                    .Where(pair => pair.Length == 2)
                    .ToDictionary(pair => pair[0], pair => pair[1], StringComparer.Ordinal);
                return values.GetValueOrDefault("TYPE") ?? values.GetValueOrDefault("PTTYPE");
            case 2:
                return null;
            default:
                throw HostTools.Failed("blkid", ["-p", "-o", "export", device], result);
        }
    }

    public async Task FormatAsync(string device, FilesystemType filesystem, CancellationToken cancellationToken)
    {
        ThrowIfInUse(device);
        var (tool, arguments) = filesystem switch
        {
            FilesystemType.Ext4 => ("mkfs.ext4", new[] { "-F", "-q", device }),
            FilesystemType.Xfs => ("mkfs.xfs", new[] { "-f", "-q", device }),
            _ => throw new ArgumentOutOfRangeException(nameof(filesystem), filesystem, null),
        };
        await HostTools.RunCheckedAsync(tool, arguments, cancellationToken, TimeSpan.FromMinutes(30));
        HostLog.Filesystem(_logger, "Formatted", device, tool);
    }

    public async Task MountAsync(string device, string mountPath, FilesystemType filesystem, IReadOnlyList<string> options, CancellationToken cancellationToken)
    {
        var target = MountTable.Normalize(mountPath);
        var existing = MountTable.At(target);
        if (existing is not null)
        {
            if (DeviceNumberOf(device) is { } number && number == (existing.Major, existing.Minor))
            {
                return;
            }

            throw new HostAttachException(HostAttachError.Busy, $"{existing.Source} is already mounted at {target}") { MountPoints = [target] };
        }

        Directory.CreateDirectory(target);
        string[] arguments = options.Count == 0
            ? ["-t", FilesystemName(filesystem), device, target]
            : ["-t", FilesystemName(filesystem), "-o", string.Join(',', options), device, target];
        await HostTools.RunCheckedAsync("mount", arguments, cancellationToken);
        HostLog.Filesystem(_logger, "Mounted", device, target);
    }

    public async Task UnmountAsync(string mountPath, CancellationToken cancellationToken)
    {
        var target = MountTable.Normalize(mountPath);
        if (MountTable.At(target) is null)
        {
            return;
        }

        var result = await HostTools.RunAsync("umount", [target], cancellationToken);
        if (!result.Succeeded)
        {
            throw MountTable.At(target) is not null
                ? new HostAttachException(HostAttachError.Busy, $"cannot unmount {target}: {result.Diagnostic}") { MountPoints = [target] }
                : HostTools.Failed("umount", [target], result);
        }

        HostLog.Filesystem(_logger, "Unmounted", target, "");
    }

    public Task<bool> IsMountedAsync(string mountPath, CancellationToken cancellationToken) =>
        Task.FromResult(MountTable.At(mountPath) is not null);

    public async Task GrowFilesystemAsync(string device, string? mountPath, FilesystemType filesystem, CancellationToken cancellationToken)
    {
        if (mountPath is not null)
        {
            var target = MountTable.Normalize(mountPath);
            var mount = MountTable.At(target);
            if (mount is null || DeviceNumberOf(device) is not { } number || number != (mount.Major, mount.Minor))
            {
                throw new HostAttachException(HostAttachError.InvalidArgument, $"{device} is not mounted at {target}");
            }

            switch (filesystem)
            {
                case FilesystemType.Ext4:
                    if (!HasCapability(CapSysResource))
                    {
                        throw new HostAttachException(HostAttachError.GrowUnsupported,
                            $"online ext4 grow of {device} needs CAP_SYS_RESOURCE, which slabd does not have here; grant it, or unmount and grow offline");
                    }

                    await HostTools.RunCheckedAsync("resize2fs", [device], cancellationToken, TimeSpan.FromMinutes(30));
                    break;
                case FilesystemType.Xfs:
                    await HostTools.RunCheckedAsync("xfs_growfs", [target], cancellationToken, TimeSpan.FromMinutes(30));
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(filesystem), filesystem, null);
            }

            HostLog.Filesystem(_logger, "Grew (online)", device, target);
            return;
        }

        if (filesystem == FilesystemType.Xfs)
        {
            throw new HostAttachException(HostAttachError.GrowUnsupported, $"xfs on {device} grows only while mounted; mount it and grow again");
        }

        ThrowIfInUse(device);
        // resize2fs refuses an unchecked filesystem offline; -p repairs only what is safe unattended.
        var check = await HostTools.RunAsync("e2fsck", ["-f", "-p", device], cancellationToken, TimeSpan.FromMinutes(30));
        if (check.ExitCode > 1)
        {
            throw HostTools.Failed("e2fsck", ["-f", "-p", device], check);
        }

        await HostTools.RunCheckedAsync("resize2fs", [device], cancellationToken, TimeSpan.FromMinutes(30));
        HostLog.Filesystem(_logger, "Grew (offline)", device, "");
    }

    /// <summary>The mount type name.</summary>
    public static string FilesystemName(FilesystemType filesystem) => filesystem switch
    {
        FilesystemType.Ext4 => "ext4",
        FilesystemType.Xfs => "xfs",
        _ => throw new ArgumentOutOfRangeException(nameof(filesystem), filesystem, null),
    };

    private static void ThrowIfInUse(string device)
    {
        var mounts = DeviceNumberOf(device) is { } number ? MountTable.MountPointsOf(number.Major, number.Minor) : [];
        if (mounts.Count > 0 || HostNative.IsHeldExclusively(device))
        {
            throw new HostAttachException(HostAttachError.Busy,
                mounts.Count > 0 ? $"{device} is mounted at {string.Join(", ", mounts)}" : $"{device} is in use")
            {
                MountPoints = mounts,
            };
        }
    }

    /// <summary>major:minor of a block device path, following symlinks such as /dev/disk/by-id/*.</summary>
    private static (int Major, int Minor)? DeviceNumberOf(string device)
    {
        var resolved = new FileInfo(device).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? device;
        return BlockSysfs.DeviceNumber(resolved);
    }

    /// <summary>Whether this process has the capability in its effective set.</summary>
    private static bool HasCapability(int capability)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal))
            {
                var mask = ulong.Parse(line["CapEff:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                return (mask & (1UL << capability)) != 0;
            }
        }

        return false;
    }
}
