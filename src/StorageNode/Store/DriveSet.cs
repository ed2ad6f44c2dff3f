using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Slab.Common;
using Tmds.Linux;

namespace Slab.Store;

/// <summary>
/// The drives of this node: each one probed, labeled, formatted and mounted on open, unmounted on
/// dispose. A drive that carries a foreign filesystem or partition signature is refused unless
/// <see cref="StoreOptions.WipeDrives"/> is set; a Slab drive of another node is refused likewise.
/// </summary>
/// <remarks>
/// Drives are found by their label on every start: the XFS label <c>slab</c> and the Slab superblock
/// <c>slab/drive.json</c> inside it. Mount points are derived from the drive's real path, so a
/// restart after a crash finds (and reuses) a mount the crash left behind.
/// </remarks>
public sealed partial class DriveSet : IAsyncDisposable
{
    /// <summary>The XFS filesystem label of every Slab drive.</summary>
    public const string FilesystemLabel = "slab";

    private readonly ILogger _logger;
    private readonly List<Drive> _drives;

    private DriveSet(List<Drive> drives, ILogger logger)
    {
        _drives = drives;
        _logger = logger;
    }

    public IReadOnlyList<Drive> Drives => _drives;

    public Drive? Find(string driveId) => _drives.Find(d => d.Id == driveId);

    /// <summary>Prepares every drive; on failure unmounts what it mounted and throws.</summary>
    /// <exception cref="SlabException">A drive is missing, foreign, or cannot be formatted or mounted.</exception>
    public static async Task<DriveSet> OpenAsync(StoreOptions options, NodeIdentity node, ILogger logger, CancellationToken cancellationToken)
    {
        if (options.DrivePaths.Count == 0)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "no drives given: pass --drive PATH (a block device or a file), or --dev");
        }

        var drives = new List<Drive>();
        var set = new DriveSet(drives, logger);
        try
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            string? poolId = null;
            foreach (var given in options.DrivePaths)
            {
                var path = ResolveDrivePath(given);
                if (!seen.Add(path))
                {
                    throw new SlabException(SlabErrorCode.InvalidArgument, $"drive {given} is given twice");
                }

                var drive = await PrepareAsync(path, options, node, poolId, logger, cancellationToken).ConfigureAwait(false);
                poolId ??= drive.Label.PoolId;
                drives.Add(drive);
            }

            // Drives formatted by different runs may carry different pool ids; the node has one pool,
            // so the first drive's id wins and the others are relabeled.
            foreach (var drive in drives)
            {
                if (drive.Label.PoolId != poolId)
                {
                    drive.Label = drive.Label with { PoolId = poolId! };
                    DurableFile.WriteJson(drive.LabelPath, drive.Label, StoreJsonContext.Default.DriveLabel);
                }
            }

            return set;
        }
        catch
        {
            await set.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Unmounts every drive. Replica files must be closed first.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var drive in _drives)
        {
            var source = MountTable.At(MountTable.Normalize(drive.MountPath))?.Source;
            var result = await ExternalCommand.RunAsync("umount", [drive.MountPath], CancellationToken.None).ConfigureAwait(false);
            if (!result.Succeeded)
            {
                LogUnmountFailed(_logger, drive.MountPath, result.Diagnostic);
                continue;
            }

            if (source is not null && source != drive.Path)
            {
                await DetachLoopIfAnyAsync(source).ConfigureAwait(false);
            }

            LogDriveUnmounted(_logger, drive.Path, drive.MountPath);
        }

        _drives.Clear();
    }

    private static string ResolveDrivePath(string given)
    {
        var full = Path.GetFullPath(given);
        var info = new FileInfo(full);
        if (info.LinkTarget is not null)
        {
            full = info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        }

        if (!File.Exists(full))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"drive {given} does not exist");
        }

        var kind = FileKind(full);
        if (kind != (uint)LibC.S_IFREG && kind != (uint)LibC.S_IFBLK)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"drive {given} is neither a block device nor a regular file");
        }

        return full;
    }

    private static async Task<Drive> PrepareAsync(string path, StoreOptions options, NodeIdentity node, string? poolId, ILogger logger, CancellationToken cancellationToken)
    {
        var mountPath = MountPathFor(options.RunDirectory, path);
        if (!MountTable.IsMountPoint(mountPath))
        {
            var signature = await ProbeSignatureAsync(path, cancellationToken).ConfigureAwait(false);
            var isSlabDrive = signature is { Type: "xfs", Label: FilesystemLabel };
            if (signature is not null && !isSlabDrive)
            {
                if (!options.WipeDrives)
                {
                    throw new SlabException(
                        SlabErrorCode.FailedPrecondition,
                        $"drive {path} carries a {signature.Value.Describe()} signature; refusing to use it. Pass --wipe-drives to erase it.");
                }

                LogWiping(logger, path, signature.Value.Describe());
                await ExternalCommand.RunCheckedAsync("wipefs", ["-a", "-q", path], cancellationToken).ConfigureAwait(false);
                signature = null;
            }

            if (signature is null)
            {
                LogFormatting(logger, path);
                await ExternalCommand.RunCheckedAsync("mkfs.xfs", ["-f", "-q", "-m", "reflink=1", "-L", FilesystemLabel, path], cancellationToken, TimeSpan.FromMinutes(10)).ConfigureAwait(false);
            }

            DurableFile.CreateDirectory(mountPath);
            var device = FileKind(path) == (uint)LibC.S_IFREG ? await AttachLoopAsync(path, cancellationToken).ConfigureAwait(false) : path;
            var mount = await ExternalCommand.RunAsync("mount", ["-t", "xfs", "-o", "noatime", device, mountPath], cancellationToken).ConfigureAwait(false);
            if (!mount.Succeeded)
            {
                if (device != path)
                {
                    await ExternalCommand.RunAsync("losetup", ["-d", device], CancellationToken.None).ConfigureAwait(false);
                }

                throw new SlabException(SlabErrorCode.FailedPrecondition, $"cannot mount drive {path} at {mountPath}: {mount.Diagnostic}");
            }
        }

        var drive = new Drive(path, mountPath, null!);
        try
        {
            var label = DurableFile.ReadJson(drive.LabelPath, StoreJsonContext.Default.DriveLabel);
            if (label is null)
            {
                label = await LabelNewDriveAsync(drive, options, node, poolId, logger, cancellationToken).ConfigureAwait(false);
            }
            else if (label.NodeId != node.NodeId)
            {
                if (!options.WipeDrives)
                {
                    throw new SlabException(
                        SlabErrorCode.FailedPrecondition,
                        $"drive {path} belongs to another Slab node ({label.NodeId}); refusing to use it. Pass --wipe-drives to erase it.");
                }

                await UnmountQuietlyAsync(mountPath).ConfigureAwait(false);
                await ExternalCommand.RunCheckedAsync("wipefs", ["-a", "-q", path], cancellationToken).ConfigureAwait(false);
                return await PrepareAsync(path, options, node, poolId, logger, cancellationToken).ConfigureAwait(false);
            }

            drive.Label = label;
            Directory.CreateDirectory(drive.VolumesDirectory);
            LogDriveReady(logger, path, mountPath, label.DriveId);
            return drive;
        }
        catch
        {
            await UnmountQuietlyAsync(mountPath).ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<DriveLabel> LabelNewDriveAsync(Drive drive, StoreOptions options, NodeIdentity node, string? poolId, ILogger logger, CancellationToken cancellationToken)
    {
        DurableFile.CreateDirectory(drive.SlabDirectory);
        DurableFile.CreateDirectory(drive.VolumesDirectory);
        var measurement = poolId is null && options.MeasurePool
            ? await PoolBenchmark.MeasureAsync(drive.SlabDirectory, cancellationToken).ConfigureAwait(false)
            : default;
        if (poolId is null && options.MeasurePool)
        {
            LogPoolMeasured(logger, measurement.Iops, measurement.MegabytesPerSecond);
        }

        var label = new DriveLabel
        {
            DriveId = Guid.NewGuid().ToString("N"),
            NodeId = node.NodeId,
            PoolId = poolId ?? Guid.NewGuid().ToString("N"),
            Created = DateTimeOffset.UtcNow,
            MeasuredIops = measurement.Iops,
            MeasuredMegabytesPerSecond = measurement.MegabytesPerSecond,
        };
        DurableFile.WriteJson(drive.LabelPath, label, StoreJsonContext.Default.DriveLabel);
        return label;
    }

    private static async Task UnmountQuietlyAsync(string mountPath)
    {
        if (MountTable.At(MountTable.Normalize(mountPath)) is { } mount)
        {
            var result = await ExternalCommand.RunAsync("umount", [mountPath], CancellationToken.None).ConfigureAwait(false);
            if (result.Succeeded)
            {
                await DetachLoopIfAnyAsync(mount.Source).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// A drive file goes through a loop device with direct I/O: replica O_DIRECT I/O then reaches the
    /// file without a second trip through the host page cache (a buffered loop cost 5x on 4 KiB
    /// random reads in bench/results/findings.md).
    /// </summary>
    private static async Task<string> AttachLoopAsync(string path, CancellationToken cancellationToken)
    {
        var device = (await ExternalCommand.RunCheckedAsync("losetup", ["--find", "--show", "--direct-io=on", path], cancellationToken).ConfigureAwait(false)).Trim();
        if (device.Length == 0)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"losetup gave no loop device for drive {path}");
        }

        return device;
    }

    /// <summary>Detaches <paramref name="device"/> when it is a loop device (drive files); no-op for real disks.</summary>
    private static async Task DetachLoopIfAnyAsync(string device)
    {
        if (device.StartsWith("/dev/loop", StringComparison.Ordinal))
        {
            await ExternalCommand.RunAsync("losetup", ["-d", device], CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>RUN/drives/&lt;first 12 hex digits of sha256(real path)&gt;: stable across restarts.</summary>
    internal static string MountPathFor(string runDirectory, string drivePath)
    {
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(drivePath)))[..12];
        return Path.Combine(Path.GetFullPath(runDirectory), "drives", hash);
    }

    private readonly record struct Signature(string? Type, string? PartitionTable, string? Label)
    {
        public string Describe() => Type is not null ? $"{Type} filesystem" : $"{PartitionTable ?? "unknown"} partition table";
    }

    private static async Task<Signature?> ProbeSignatureAsync(string path, CancellationToken cancellationToken)
    {
        // blkid exits 2 when it finds nothing; -p probes the device itself, not a cache.
        var result = await ExternalCommand.RunAsync("blkid", ["-p", "-o", "export", path], cancellationToken).ConfigureAwait(false);
        if (result.ExitCode == 2)
        {
            return null;
        }

        if (!result.Succeeded)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"cannot probe drive {path}: {result.Diagnostic}");
        }

        string? type = null, partitionTable = null, label = null;
        foreach (var line in result.StandardOutput.Split('\n'))
        {
            var eq = line.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                continue;
            }

            var key = line[..eq];
            var value = line[(eq + 1)..];
            switch (key)
            {
                case "TYPE": type = value; break;
                case "PTTYPE": partitionTable = value; break;
                case "LABEL": label = value; break;
                default: break;
            }
        }

        return type is null && partitionTable is null ? null : new Signature(type, partitionTable, label);
    }

    private static unsafe uint FileKind(string path)
    {
        stat st;
        int rc;
        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            rc = LibC.stat(p, &st);
        }

        if (rc != 0)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"cannot stat drive {path} (errno {LibC.errno})");
        }

        return (uint)(st.st_mode & LibC.S_IFMT);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Wiping drive {Path}, which carried a {Signature} signature (--wipe-drives)")]
    private static partial void LogWiping(ILogger logger, string path, string signature);

    [LoggerMessage(Level = LogLevel.Information, Message = "Formatting drive {Path} as XFS with reflink")]
    private static partial void LogFormatting(ILogger logger, string path);

    [LoggerMessage(Level = LogLevel.Information, Message = "Drive {Path} ready at {MountPath} (id {DriveId})")]
    private static partial void LogDriveReady(ILogger logger, string path, string mountPath, string driveId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Drive {Path} unmounted from {MountPath}")]
    private static partial void LogDriveUnmounted(ILogger logger, string path, string mountPath);

    [LoggerMessage(Level = LogLevel.Error, Message = "Cannot unmount drive at {MountPath}: {Reason}")]
    private static partial void LogUnmountFailed(ILogger logger, string mountPath, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Pool measured: {Iops:0} IOPS (4 KiB sync random write), {Mbps:0} MB/s (1 MiB sync sequential write)")]
    private static partial void LogPoolMeasured(ILogger logger, double iops, double mbps);
}
