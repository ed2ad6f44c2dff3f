using System.Diagnostics;
using Slab.Common;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A throwaway XFS filesystem (with <c>reflink=1</c>) on a loop-mounted sparse image in a temp
/// directory. Needs root, xfsprogs and loop devices.
/// </summary>
/// <remarks>
/// Use per test: <c>await using var xfs = await XfsScratch.CreateAsync();</c>, so it is unmounted
/// and deleted also when the test fails. Disposal unmounts (the loop device detaches
/// automatically), verifies with <c>losetup -j</c> that no loop device still holds the image (and
/// detaches any that does), then deletes the image and directories. A cleanup failure throws after
/// every step was tried. Scratch filesystems are independent, so parallel tests may each have one.
/// </remarks>
public sealed class XfsScratch : IAsyncDisposable
{
    /// <summary>mkfs.xfs refuses filesystems smaller than 300 MiB.</summary>
    public const long MinimumSizeBytes = 300L * 1024 * 1024;

    public const long DefaultSizeBytes = 320L * 1024 * 1024;

    private int _disposed;

    private XfsScratch(string root, string imagePath, string mountPoint, long sizeBytes)
    {
        Root = root;
        ImagePath = imagePath;
        MountPoint = mountPoint;
        SizeBytes = sizeBytes;
    }

    /// <summary>The temp directory holding the image and the mount point.</summary>
    public string Root { get; }

    /// <summary>The sparse image file backing the loop device.</summary>
    public string ImagePath { get; }

    /// <summary>Where the XFS filesystem is mounted; put test files here.</summary>
    public string MountPoint { get; }

    /// <summary>Size of the image (the filesystem's raw size) in bytes.</summary>
    public long SizeBytes { get; }

    /// <summary>Free bytes in the filesystem right now (statfs f_bavail × f_bsize).</summary>
    public long AvailableBytes => new DriveInfo(MountPoint).AvailableFreeSpace;

    /// <summary>A path inside the mounted filesystem.</summary>
    public string PathOf(string name) => Path.Combine(MountPoint, name);

    /// <summary>Creates the image, formats it XFS with reflink and mounts it.</summary>
    /// <param name="sizeBytes">Image size; at least <see cref="MinimumSizeBytes"/>. The image is sparse,
    /// so only what the test writes uses host disk.</param>
    public static async Task<XfsScratch> CreateAsync(long sizeBytes = DefaultSizeBytes, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(sizeBytes, MinimumSizeBytes);
        var root = Directory.CreateTempSubdirectory("slab-xfs-").FullName;
        var image = Path.Combine(root, "xfs.img");
        var mountPoint = Path.Combine(root, "mnt");
        var scratch = new XfsScratch(root, image, mountPoint, sizeBytes);
        try
        {
            Directory.CreateDirectory(mountPoint);
            using (var stream = new FileStream(image, FileMode.CreateNew, FileAccess.Write))
            {
                stream.SetLength(sizeBytes);
            }

            await ExternalCommand.RunCheckedAsync("mkfs.xfs", ["-q", "-m", "reflink=1", image], cancellationToken);
            await ExternalCommand.RunCheckedAsync("mount", ["-o", "loop", image, mountPoint], cancellationToken);
            return scratch;
        }
        catch
        {
            await scratch.DisposeAsync();
            throw;
        }
    }

    /// <summary>True when <see cref="MountPoint"/> is a mount point now.</summary>
    public async Task<bool> IsMountedAsync()
    {
        var result = await ExternalCommand.RunAsync("mountpoint", ["-q", MountPoint], CancellationToken.None);
        return result.Succeeded;
    }

    /// <summary>Loop devices attached to <see cref="ImagePath"/> (normally none after disposal).</summary>
    public async Task<IReadOnlyList<string>> LoopDevicesAsync()
    {
        if (!File.Exists(ImagePath))
        {
            return [];
        }

        var output = await ExternalCommand.RunCheckedAsync("losetup", ["-j", ImagePath], CancellationToken.None);
        return output
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(':')[0])
            .ToList();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var problems = new List<string>();
        if (Directory.Exists(MountPoint) && await IsMountedAsync())
        {
            var umount = await ExternalCommand.RunAsync("umount", [MountPoint], CancellationToken.None);
            if (!umount.Succeeded)
            {
                problems.Add($"umount {MountPoint}: {umount.Diagnostic}");
                // Still busy (a leaked fd): detach lazily so the loop device goes away once it closes.
                await ExternalCommand.RunAsync("umount", ["-l", MountPoint], CancellationToken.None);
            }
        }

        try
        {
            // The kernel releases an autoclear loop device after the unmount, possibly a moment later
            // (deferred to a workqueue on recent kernels): give it up to 5 s before calling it leaked.
            var released = Stopwatch.StartNew();
            while ((await LoopDevicesAsync()).Count > 0 && released.Elapsed < TimeSpan.FromSeconds(5))
            {
                await Task.Delay(50);
            }

            foreach (var device in await LoopDevicesAsync())
            {
                problems.Add($"loop device {device} still attached to {ImagePath}");
                await ExternalCommand.RunAsync("losetup", ["-d", device], CancellationToken.None);
            }
        }
        catch (ExternalCommandException ex)
        {
            problems.Add(ex.Message);
        }

        if (await IsMountedAsync())
        {
            problems.Add($"{MountPoint} is still mounted; leaving {Root} in place");
        }
        else
        {
            try
            {
                Directory.Delete(Root, recursive: true);
            }
            catch (IOException ex)
            {
                problems.Add($"delete {Root}: {ex.Message}");
            }
        }

        if (problems.Count > 0)
        {
            throw new InvalidOperationException("XFS scratch cleanup: " + string.Join("; ", problems));
        }
    }
}
