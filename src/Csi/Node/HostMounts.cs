using System.Globalization;
using Slab.Common;
using Slab.Host;

namespace Slab.Csi.Node;

/// <summary>
/// The host side of publishing: bind mounts, unmounts, device numbers and filesystem usage, in
/// slab-csi's mount namespace (the host's: slab-csi runs with the kubelet directory shared
/// bidirectionally). Failures are <see cref="CsiException"/>s with the tool's own diagnostic.
/// </summary>
internal static class HostMounts
{
    public static MountEntry? At(string path) => MountTable.At(path);

    /// <summary>
    /// The device node bind-mounted at a block volume's target, or null when the mount is not one:
    /// such a mount's source is devtmpfs and its root the node's path under /dev (the mount's own
    /// major:minor are devtmpfs', not the device's).
    /// </summary>
    public static string? BoundDevice(MountEntry mount) =>
        mount.FilesystemType == "devtmpfs" && mount.Root.Length > 1 ? "/dev" + mount.Root : null;

    /// <summary>Bind-mounts <paramref name="source"/> (a directory or a device node) at <paramref name="target"/>, read-only when asked.</summary>
    public static async Task BindAsync(string source, string target, bool readOnly, CancellationToken cancellationToken)
    {
        await RunAsync("mount", ["--bind", source, target], cancellationToken).ConfigureAwait(false);
        if (readOnly)
        {
            try
            {
                await RunAsync("mount", ["-o", "remount,bind,ro", target], cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await UnmountAsync(target, cancellationToken).ConfigureAwait(false);
                throw;
            }
        }
    }

    /// <summary>Unmounts every mount stacked at <paramref name="target"/>; a no-op when none is.</summary>
    public static async Task UnmountAsync(string target, CancellationToken cancellationToken)
    {
        while (MountTable.IsMountPoint(target))
        {
            await RunAsync("umount", [target], cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Grows the filesystem mounted at <paramref name="mount"/> to its device's size (a no-op when it is that size).</summary>
    public static Task GrowAsync(MountEntry mount, CancellationToken cancellationToken) => mount.FilesystemType switch
    {
        "ext4" or "ext3" or "ext2" => RunAsync("resize2fs", [mount.Source], cancellationToken),
        "xfs" => RunAsync("xfs_growfs", [mount.MountPoint], cancellationToken),
        _ => throw CsiException.FailedPrecondition($"{mount.FilesystemType} on {mount.Source} cannot be grown by slab-csi (ext4 and xfs can)"),
    };

    /// <summary>statvfs: (total, available, used) bytes and (total, free, used) inodes.</summary>
    public static unsafe (long Total, long Available, long Used, long Inodes, long InodesFree, long InodesUsed) Usage(string path)
    {
        Tmds.Linux.statvfs info;
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        int result;
        fixed (byte* p = bytes)
        {
            result = Tmds.Linux.LibC.statvfs(p, &info);
        }

        if (result != 0)
            throw CsiException.NotFound($"cannot read usage of {path} (errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()})");
        var fragment = (long)(ulong)info.f_frsize;
        var total = (long)(ulong)info.f_blocks * fragment;
        var available = (long)(ulong)info.f_bavail * fragment;
        var used = total - ((long)(ulong)info.f_bfree * fragment);
        var files = (long)(ulong)info.f_files;
        var free = (long)(ulong)info.f_ffree;
        return (total, available, used, files, free, files - free);
    }

    private static async Task RunAsync(string tool, IReadOnlyList<string> arguments, CancellationToken cancellationToken)
    {
        CommandResult result;
        try
        {
            result = await ExternalCommand.RunAsync(tool, arguments, cancellationToken).ConfigureAwait(false);
        }
        catch (ExternalCommandException ex)
        {
            throw new CsiException(Grpc.Core.StatusCode.Internal, $"{tool} could not run: {ex.Message}", ex);
        }

        if (!result.Succeeded)
            throw new CsiException(Grpc.Core.StatusCode.Internal, $"'{tool} {string.Join(' ', arguments)}' failed (exit {result.ExitCode}): {result.Diagnostic}");
    }
}
