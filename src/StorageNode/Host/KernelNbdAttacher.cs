using System.Runtime.Versioning;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Slab.Host;

/// <summary>
/// Attaches through the kernel NBD driver: <c>nbd-client</c> (netlink) connects a free
/// <c>/dev/nbdN</c> to the export, its size forced to the volume's size (<c>-B</c>), so a ceiling
/// export works here too.
/// </summary>
/// <remarks>
/// Online grow is not offered: nbd-client cannot change a connected device's size, so growing means
/// detach and attach again (<see cref="HostAttachError.GrowUnsupported"/>). Not exercised by the
/// test suite (no nbd module on the build host).
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class KernelNbdAttacher : AttacherBase
{
    public KernelNbdAttacher(HostOptions options, ILogger<KernelNbdAttacher>? logger = null)
        : base(options, logger ?? NullLogger<KernelNbdAttacher>.Instance)
    {
    }

    public override AttachMethod Method => AttachMethod.KernelNbd;

    private protected override async Task<AttachedDevice> AttachCoreAsync(AttachSpec spec, CancellationToken cancellationToken)
    {
        HostTools.Require("nbd-client");
        var volume = spec.VolumeName;
        var directory = Layout.DirectoryOf(volume);
        var device = BlockSysfs.FirstFreeNbd()
            ?? throw new HostAttachException(HostAttachError.DeviceFailed, "no free /dev/nbdN (is the nbd module loaded with enough nbds_max?)") { VolumeName = volume };
        var connected = false;
        try
        {
            Directory.CreateDirectory(Layout.Root);
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            await HostTools.RunCheckedAsync("nbd-client",
                [
                    "-N", spec.ExportName,
                    "-b", "512",
                    "-B", spec.DeviceSizeBytes.ToString(CultureInfo.InvariantCulture),
                    "-unix", spec.NbdUnixSocket,
                    device,
                ],
                cancellationToken);
            connected = true;
            var size = BlockSysfs.SizeBytes(device);
            if (size != spec.DeviceSizeBytes)
            {
                throw new HostAttachException(HostAttachError.DeviceFailed, $"{device} has {size} bytes, expected {spec.DeviceSizeBytes}") { VolumeName = volume };
            }

            var state = new AttachmentState
            {
                VolumeName = volume,
                Method = AttachMethod.KernelNbd,
                NbdUnixSocket = spec.NbdUnixSocket,
                ExportName = spec.ExportName,
                SizeBytes = spec.DeviceSizeBytes,
                DevicePath = device,
                AttachedAt = DateTimeOffset.UtcNow,
            };
            AttachmentLayout.Write(Layout.StateFileOf(volume), state);
            return state.ToAttachedDevice(directory);
        }
        catch (Exception ex)
        {
            HostLog.AttachFailed(Logger, volume, ex);
            if (connected)
            {
                try
                {
                    await HostTools.RunCheckedAsync("nbd-client", ["-d", device], CancellationToken.None);
                }
                catch (HostAttachException undo)
                {
                    HostLog.UndoStepFailed(Logger, volume, $"disconnect {device}", undo);
                }
            }

            await Cleaner.RemoveAsync(volume, knownPid: null, CancellationToken.None);
            throw;
        }
    }

    private protected override Task<AttachmentState> ResizeCoreAsync(AttachmentState state, long newSizeBytes, CancellationToken cancellationToken) =>
        throw new HostAttachException(HostAttachError.GrowUnsupported,
            $"'{state.VolumeName}' is attached through the kernel NBD driver ({state.DevicePath}), which cannot grow online; detach and attach it again to see {newSizeBytes} bytes")
        {
            VolumeName = state.VolumeName,
        };

    private protected override bool IsDeviceOurs(AttachmentState state) => BlockSysfs.NbdConnected(state.DevicePath);

    private protected override async Task DetachCoreAsync(AttachmentState state, CancellationToken cancellationToken)
    {
        if (!BlockSysfs.NbdConnected(state.DevicePath))
        {
            return;
        }

        await HostTools.RunCheckedAsync("nbd-client", ["-d", state.DevicePath], cancellationToken);
    }
}
