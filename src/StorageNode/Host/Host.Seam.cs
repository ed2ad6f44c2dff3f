namespace Slab.Host;

// The seam between slabd and the host it runs on: turning an NBD export into a Linux block device
// (attach / resize / detach / crash recovery) and putting a filesystem on it. Everything here runs
// host tools as root; control plane only, never on the data path.

/// <summary>How a volume becomes a block device on this host.</summary>
public enum AttachMethod
{
    /// <summary>
    /// <c>nbdfuse</c> (Debian libnbd-bin) exposes the export as a FUSE file and <c>losetup</c> turns
    /// it into <c>/dev/loopN</c> limited to the volume's size. Works without the nbd module; grows online.
    /// </summary>
    NbdFuseLoop,

    /// <summary>The kernel NBD driver, <c>/dev/nbdN</c>, configured by <c>nbd-client</c> over netlink.</summary>
    KernelNbd,

    /// <summary>
    /// slabd's own FUSE server (<see cref="IAttachFileServer"/>) exposes the volume as a file and
    /// <c>losetup</c> turns it into <c>/dev/loopN</c>: the nbdfuse + loop layout without nbdfuse and the
    /// NBD socket in between. Chosen over <see cref="NbdFuseLoop"/> when slabd provides the server and
    /// attachments need not outlive slabd.
    /// </summary>
    FuseLoop,
}

/// <summary>Which <see cref="AttachMethod"/> to use; <see cref="Auto"/> prefers the kernel driver when it exists.</summary>
public enum AttachMethodPreference
{
    /// <summary><see cref="AttachMethod.KernelNbd"/> when <c>/dev/nbd0</c> exists and nbd-client is installed, else nbdfuse + loop.</summary>
    Auto,
    KernelNbd,
    NbdFuse,
}

/// <summary>Filesystems slabd formats and grows.</summary>
public enum FilesystemType
{
    Ext4,
    Xfs,
}

/// <summary>Host attach settings.</summary>
/// <param name="RunDirectory">
/// slabd's runtime directory (e.g. <c>/run/slab</c>); each attachment lives under
/// <c>RunDirectory/attach/&lt;volume&gt;/</c> with its <c>state.json</c>.
/// </param>
/// <param name="PreferredMethod">Which attach method to use.</param>
public sealed record HostOptions(string RunDirectory, AttachMethodPreference PreferredMethod = AttachMethodPreference.Auto)
{
    /// <summary>
    /// Open the loop device's backing file with O_DIRECT (<c>losetup --direct-io=on</c>): no second
    /// page cache between the loop device and the FUSE file, flushes go straight to NBD, and no
    /// writeback through FUSE under memory pressure (nbdfuse's documented loop deadlock).
    /// </summary>
    public bool LoopDirectIo { get; init; } = true;

    /// <summary>How long a device (nbdfuse readiness, loop release) may take to appear or go away.</summary>
    public TimeSpan DeviceTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long detach waits for nbdfuse to exit after its FUSE mount is gone before killing it.</summary>
    public TimeSpan ProcessExitTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// When set, nbdfuse + loop attachments outlive slabd: nbdfuse connects to a relay of its own
    /// (nbdkit's nbd plugin under its retry filter, <c>RUN/attach/&lt;volume&gt;/relay.sock</c>) that
    /// reconnects to the attach socket when slabd goes away, holding the device's I/O up to this long
    /// (whole seconds, at least 1) before failing it with EIO; <see cref="IBlockDeviceAttacher.RecoverAsync"/>
    /// keeps such attachments intact for slabd to adopt. Null: nbdfuse connects to slabd directly and
    /// an attachment dies with slabd. The kernel NBD driver's attachments never outlive slabd.
    /// </summary>
    public TimeSpan? ReconnectTimeout { get; init; }

    /// <summary><c>RunDirectory/attach</c>.</summary>
    public string AttachDirectory => Path.Combine(RunDirectory, "attach");
}

/// <summary>What to attach.</summary>
/// <param name="VolumeName">
/// The volume; also the attachment's directory and file name, so it must match
/// <c>[A-Za-z0-9][A-Za-z0-9._-]{0,127}</c>.
/// </param>
/// <param name="NbdUnixSocket">slabd's root-only attach socket.</param>
/// <param name="ExportName">The export on that socket.</param>
/// <param name="DeviceSizeBytes">
/// The volume's real size: the block device shows exactly this many bytes. A positive multiple of
/// 512. For nbdfuse + loop the export may advertise more (the ceiling); the loop device is limited
/// to this size. For the kernel driver the device is forced to this size (<c>nbd-client -B</c>).
/// </param>
public sealed record AttachSpec(string VolumeName, string NbdUnixSocket, string ExportName, long DeviceSizeBytes);

/// <summary>An attached volume and everything its attach made on the host.</summary>
/// <param name="VolumeName">The volume.</param>
/// <param name="DevicePath">The block device to format, mount or hand to a container (<c>/dev/loopN</c>, <c>/dev/nbdN</c>).</param>
/// <param name="Method">How it was attached.</param>
/// <param name="SizeBytes">The device's size in bytes.</param>
/// <param name="AttachDirectory">The attachment's directory under <see cref="HostOptions.AttachDirectory"/>.</param>
/// <param name="FuseMountPoint">The FUSE mount point (nbdfuse + loop and FUSE + loop).</param>
/// <param name="BackingFile">The FUSE file behind the loop device (nbdfuse + loop and FUSE + loop).</param>
/// <param name="NbdfusePid">The nbdfuse process (nbdfuse + loop only).</param>
/// <param name="DirectIo">Whether the loop device does direct I/O to its backing file.</param>
/// <param name="RelayPid">The reconnecting relay between nbdfuse and slabd (<see cref="HostOptions.ReconnectTimeout"/>), or null.</param>
public sealed record AttachedDevice(
    string VolumeName,
    string DevicePath,
    AttachMethod Method,
    long SizeBytes,
    string AttachDirectory,
    string? FuseMountPoint = null,
    string? BackingFile = null,
    int? NbdfusePid = null,
    bool DirectIo = false,
    int? RelayPid = null)
{
    /// <summary>Where slabd mounted the device, as last recorded by <see cref="IBlockDeviceAttacher.RecordMountsAsync"/>.</summary>
    public IReadOnlyList<string> MountPaths { get; init; } = [];

    /// <summary>When the device was attached.</summary>
    public DateTimeOffset AttachedAt { get; init; }

    /// <summary>Whether the device outlives slabd (it goes through a reconnecting relay).</summary>
    public bool OutlivesDaemon => RelayPid is not null;

    /// <summary>Value equality, <see cref="MountPaths"/> compared element by element.</summary>
    public bool Equals(AttachedDevice? other) =>
        other is not null
        && (VolumeName, DevicePath, Method, SizeBytes, AttachDirectory, FuseMountPoint, BackingFile, NbdfusePid, DirectIo, RelayPid, AttachedAt)
            == (other.VolumeName, other.DevicePath, other.Method, other.SizeBytes, other.AttachDirectory, other.FuseMountPoint, other.BackingFile, other.NbdfusePid, other.DirectIo, other.RelayPid, other.AttachedAt)
        && MountPaths.SequenceEqual(other.MountPaths, StringComparer.Ordinal);

    public override int GetHashCode() => HashCode.Combine(VolumeName, DevicePath, NbdfusePid, RelayPid, AttachedAt);

    /// <summary>The method as shown to people and in the API: <c>nbdfuse-loop</c> or <c>kernel-nbd</c>.</summary>
    public string MethodName => Method.ToWireName();
}

/// <summary>What start-up recovery undid for one leftover attachment.</summary>
/// <param name="VolumeName">The attachment directory's name.</param>
/// <param name="Actions">What was done, in order, e.g. <c>lazily unmounted /mnt/x</c>, <c>detached /dev/loop3</c>.</param>
/// <param name="Complete">False when something could not be removed (it is logged; the directory is kept for the next try).</param>
public sealed record StaleAttachmentRemoval(string VolumeName, IReadOnlyList<string> Actions, bool Complete);

/// <summary>What start-up recovery found under <c>RUN/attach</c>.</summary>
/// <param name="Removed">Attachments undone: broken, half-made, or unable to outlive slabd.</param>
/// <param name="Kept">
/// Intact attachments that outlive slabd (<see cref="HostOptions.ReconnectTimeout"/>), whose devices
/// are still in use: each is to be adopted by the volume layer, or given up with
/// <see cref="IBlockDeviceAttacher.AbandonAsync"/>.
/// </param>
public sealed record AttachmentRecovery(IReadOnlyList<StaleAttachmentRemoval> Removed, IReadOnlyList<AttachedDevice> Kept);

/// <summary>
/// Attaches NBD exports as block devices on this host.
/// </summary>
/// <remarks>
/// Contracts:
/// <list type="bullet">
/// <item>At most one attachment per volume name. Calls for the same volume are serialized; calls for
/// different volumes run concurrently.</item>
/// <item>Attach is all or nothing: when it throws, nothing it made is left behind.</item>
/// <item>What an attachment made is recorded in <c>RUN/attach/&lt;volume&gt;/state.json</c> (written
/// atomically), so detach works from a fresh process and <see cref="RecoverAsync"/> can undo it
/// after a crash (or keep it, when it outlives slabd).</item>
/// <item>Failures are <see cref="HostAttachException"/>s with a <see cref="HostAttachError"/>;
/// nothing else escapes except <see cref="OperationCanceledException"/>.</item>
/// </list>
/// </remarks>
public interface IBlockDeviceAttacher
{
    /// <summary>The method this attacher uses.</summary>
    AttachMethod Method { get; }

    /// <summary>Attaches the export; the device exists and has the requested size when this returns.</summary>
    /// <exception cref="HostAttachException">
    /// <see cref="HostAttachError.AlreadyAttached"/>, <see cref="HostAttachError.InvalidArgument"/>,
    /// <see cref="HostAttachError.ToolMissing"/>, <see cref="HostAttachError.DeviceFailed"/>.
    /// </exception>
    Task<AttachedDevice> AttachAsync(AttachSpec spec, CancellationToken cancellationToken);

    /// <summary>
    /// Grows the live device to <paramref name="newSizeBytes"/> (a multiple of 512, not smaller than
    /// the current size; equal is a no-op). Filesystems on it are not touched; see
    /// <see cref="IFilesystemManager.GrowFilesystemAsync"/>.
    /// </summary>
    /// <exception cref="HostAttachException">
    /// <see cref="HostAttachError.NotAttached"/>, <see cref="HostAttachError.InvalidArgument"/> (shrink,
    /// unaligned, or above what the export advertises), <see cref="HostAttachError.GrowUnsupported"/>
    /// (kernel NBD driver), <see cref="HostAttachError.DeviceFailed"/>.
    /// </exception>
    Task<AttachedDevice> ResizeAsync(string volumeName, long newSizeBytes, CancellationToken cancellationToken);

    /// <summary>The attachment of <paramref name="volumeName"/>, or null when it is not attached.</summary>
    Task<AttachedDevice?> GetAsync(string volumeName, CancellationToken cancellationToken);

    /// <summary>
    /// Detaches the volume and removes everything its attach made. Refuses while the device is
    /// mounted or held open exclusively.
    /// </summary>
    /// <exception cref="HostAttachException">
    /// <see cref="HostAttachError.NotAttached"/>, <see cref="HostAttachError.Busy"/> (names the mount
    /// points), <see cref="HostAttachError.ToolMissing"/>, <see cref="HostAttachError.DeviceFailed"/>.
    /// </exception>
    Task DetachAsync(string volumeName, CancellationToken cancellationToken);

    /// <summary>
    /// Start-up recovery over every attachment under <c>RUN/attach</c> that this instance did not
    /// make. One that outlives slabd and is intact (relay, nbdfuse, FUSE file and loop device all
    /// still there) is kept and returned, and from then on is this instance's own. Every other one,
    /// whole or half-made, is undone: the device's mounts lazily unmounted, the device detached, the
    /// FUSE mount lazily unmounted, leftover nbdfuse and relay ended, the directory deleted.
    /// Idempotent; never throws for one bad attachment (it reports it as incomplete).
    /// </summary>
    Task<AttachmentRecovery> RecoverAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Gives up an attachment that recovery kept but that must not be used any more (its volume is
    /// gone, or another node took it over): removes it the way recovery removes a leftover, lazily
    /// unmounting whatever is mounted on the device. Never throws except on cancellation.
    /// </summary>
    Task<StaleAttachmentRemoval> AbandonAsync(string volumeName, CancellationToken cancellationToken);

    /// <summary>
    /// Records where slabd mounted the device (in the attachment's <c>state.json</c>), so that an
    /// attachment that outlives slabd is adopted with its mounts.
    /// </summary>
    /// <exception cref="HostAttachException"><see cref="HostAttachError.NotAttached"/>.</exception>
    Task RecordMountsAsync(string volumeName, IReadOnlyList<string> mountPaths, CancellationToken cancellationToken);
}

/// <summary>
/// Serves an export as the one file of a FUSE filesystem that slabd mounts itself, for
/// <see cref="AttachMethod.FuseLoop"/>: the loop device over that file reaches the volume in slabd's
/// process. Implemented by the frontend layer.
/// </summary>
public interface IAttachFileServer
{
    /// <summary>
    /// Mounts at <paramref name="mountPoint"/> (an existing empty directory) a FUSE filesystem holding
    /// the file <paramref name="fileName"/> over export <paramref name="exportName"/> of the attach
    /// catalog; returns once the file can be opened. Disposing the result stops serving (unmounting
    /// first if still mounted) and lets go of the export.
    /// </summary>
    /// <exception cref="HostAttachException"><see cref="HostAttachError.DeviceFailed"/>: no such export, or the mount failed.</exception>
    Task<IAsyncDisposable> ServeAsync(string exportName, string mountPoint, string fileName, CancellationToken cancellationToken);
}

/// <summary>
/// Probes, formats, mounts and grows filesystems on block devices.
/// </summary>
/// <remarks>
/// Mount state is read from <c>/proc/self/mountinfo</c>, i.e. slabd's mount namespace. Failures are
/// <see cref="HostAttachException"/>s.
/// </remarks>
public interface IFilesystemManager
{
    /// <summary>The filesystem (or other signature) on the device as blkid names it (<c>ext4</c>, <c>xfs</c>, ...), or null when blank.</summary>
    Task<string?> ProbeAsync(string device, CancellationToken cancellationToken);

    /// <summary>Creates a filesystem, overwriting whatever is on the device.</summary>
    Task FormatAsync(string device, FilesystemType filesystem, CancellationToken cancellationToken);

    /// <summary>
    /// Mounts the device at <paramref name="mountPath"/>, creating the directory if missing. A no-op
    /// when this device is already mounted there; <see cref="HostAttachError.Busy"/> when something
    /// else is. <paramref name="options"/> are mount(8) <c>-o</c> options, already validated
    /// (<see cref="MountOptions.Validate"/>); empty = the defaults.
    /// </summary>
    Task MountAsync(string device, string mountPath, FilesystemType filesystem, IReadOnlyList<string> options, CancellationToken cancellationToken);

    /// <summary>Unmounts <paramref name="mountPath"/>; a no-op when nothing is mounted there. <see cref="HostAttachError.Busy"/> when in use.</summary>
    Task UnmountAsync(string mountPath, CancellationToken cancellationToken);

    /// <summary>Whether something is mounted at exactly <paramref name="mountPath"/>.</summary>
    Task<bool> IsMountedAsync(string mountPath, CancellationToken cancellationToken);

    /// <summary>
    /// Grows the filesystem to fill its (already grown) device. Online when
    /// <paramref name="mountPath"/> is given (it must be where the device is mounted); ext4 can also
    /// grow offline (null mount path: <c>e2fsck -f -p</c> then <c>resize2fs</c>). xfs grows only online.
    /// </summary>
    /// <exception cref="HostAttachException">
    /// <see cref="HostAttachError.GrowUnsupported"/> when this host cannot do it (xfs offline; online
    /// ext4 without CAP_SYS_RESOURCE), <see cref="HostAttachError.InvalidArgument"/> when the device
    /// is not mounted at <paramref name="mountPath"/>, <see cref="HostAttachError.DeviceFailed"/>.
    /// </exception>
    Task GrowFilesystemAsync(string device, string? mountPath, FilesystemType filesystem, CancellationToken cancellationToken);
}

/// <summary>Names for <see cref="AttachMethod"/>.</summary>
public static class AttachMethodNames
{
    public const string NbdFuseLoop = "nbdfuse-loop";
    public const string KernelNbd = "kernel-nbd";
    public const string FuseLoop = "fuse-loop";

    /// <summary><c>nbdfuse-loop</c> or <c>kernel-nbd</c>.</summary>
    public static string ToWireName(this AttachMethod method) => method switch
    {
        AttachMethod.NbdFuseLoop => NbdFuseLoop,
        AttachMethod.KernelNbd => KernelNbd,
        AttachMethod.FuseLoop => FuseLoop,
        _ => throw new ArgumentOutOfRangeException(nameof(method), method, null),
    };
}
