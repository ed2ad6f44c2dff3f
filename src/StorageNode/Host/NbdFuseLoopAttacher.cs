using System.Runtime.Versioning;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

using Slab.Common;

namespace Slab.Host;

/// <summary>
/// Attaches through <c>nbdfuse</c> + a loop device, for hosts without the nbd module.
/// </summary>
/// <remarks>
/// <para>Layout of <c>RUN/attach/&lt;volume&gt;/</c>: <c>fuse/</c> (nbdfuse's mount point) holding the
/// file <c>fuse/&lt;volume&gt;</c>, <c>nbdfuse.pid</c>, <c>nbdfuse.log</c> (its stderr) and
/// <c>state.json</c>.</para>
/// <para>libnbd fixes the export size at the handshake, so the export advertises a ceiling and
/// the loop device carries the real size as its size limit; growing changes <c>lo_sizelimit</c>
/// on the live device (LOOP_SET_STATUS64), up to the ceiling.</para>
/// <para>nbdfuse ≤ 1.14's <c>-P</c> only writes the pid file once it serves (it stays in the
/// foreground), so it is started as a child with its output in <c>nbdfuse.log</c>, not tied to
/// slabd's pipes, and survives a slabd restart until start-up recovery removes it.</para>
/// <para>With <see cref="HostOptions.ReconnectTimeout"/>, nbdfuse connects to a relay of its own
/// (<see cref="StartRelayAsync"/>) instead of slabd, so the device outlives slabd: while slabd is
/// away its requests wait, and are sent again once it listens.</para>
/// </remarks>
[SupportedOSPlatform("linux")]
public sealed class NbdFuseLoopAttacher : AttacherBase
{
    // Positional parameters keep the command free of quoting: $0 is the log file, "$@" is nbdfuse's argv.
    private const string LaunchScript = "exec \"$@\" </dev/null >>\"$0\" 2>&1";

    public NbdFuseLoopAttacher(HostOptions options, ILogger<NbdFuseLoopAttacher>? logger = null)
        : base(options, logger ?? NullLogger<NbdFuseLoopAttacher>.Instance)
    {
    }

    public override AttachMethod Method => AttachMethod.NbdFuseLoop;

    /// <summary>
    /// slabd's own FUSE file server: when set, attachments that need not outlive slabd are served by
    /// it (<see cref="AttachMethod.FuseLoop"/>) instead of nbdfuse. Set once at start-up, before the
    /// first attach.
    /// </summary>
    public IAttachFileServer? FileServer
    {
        get => Volatile.Read(ref _fileServer);
        set => Volatile.Write(ref _fileServer, value);
    }

    private IAttachFileServer? _fileServer;

    /// <summary>What the file server serves for this instance's FuseLoop attachments, by volume.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, IAsyncDisposable> _served = new(StringComparer.Ordinal);

    /// <summary>The NBD URI nbdfuse connects to: <c>nbd+unix:///EXPORT?socket=PATH</c>, both parts percent-encoded.</summary>
    public static string BuildUri(string socketPath, string exportName) =>
        $"nbd+unix:///{Uri.EscapeDataString(exportName)}?socket={Uri.EscapeDataString(socketPath).Replace("%2F", "/", StringComparison.Ordinal)}";

    private protected override async Task<AttachedDevice> AttachCoreAsync(AttachSpec spec, CancellationToken cancellationToken)
    {
        var fileServer = Options.ReconnectTimeout is null ? FileServer : null;
        if (fileServer is null)
        {
            HostTools.Require("nbdfuse");
            HostTools.Require("fusermount3");
        }

        HostTools.Require("losetup");
        var volume = spec.VolumeName;
        var directory = Layout.DirectoryOf(volume);
        var fuseMountPoint = Layout.FuseMountPointOf(volume);
        var backingFile = Layout.BackingFileOf(volume);
        int? pid = null;
        string? relaySocket = null;
        int? relayPid = null;
        IAsyncDisposable? served = null;
        try
        {
            Directory.CreateDirectory(Layout.Root);
            Directory.CreateDirectory(directory, OwnerOnly);
            Directory.CreateDirectory(fuseMountPoint, OwnerOnly);
            if (fileServer is not null)
            {
                served = await fileServer.ServeAsync(spec.ExportName, fuseMountPoint, volume, cancellationToken);
            }
            else
            {
                if (Options.ReconnectTimeout is { } reconnect)
                {
                    relaySocket = Layout.RelaySocketOf(volume);
                    relayPid = await StartRelayAsync(spec, relaySocket, reconnect, cancellationToken);
                }

                var uri = relaySocket is null ? BuildUri(spec.NbdUnixSocket, spec.ExportName) : BuildUri(relaySocket, "");
                pid = await StartNbdfuseAsync(spec, uri, p => pid = p, cancellationToken);
            }

            var ceiling = new FileInfo(backingFile).Length;
            if (ceiling < spec.DeviceSizeBytes)
            {
                throw Invalid(volume, $"export '{spec.ExportName}' has {ceiling} bytes, less than the requested device size {spec.DeviceSizeBytes}");
            }

            List<string> arguments = ["--find", "--show", "--sizelimit", spec.DeviceSizeBytes.ToString(CultureInfo.InvariantCulture)];
            if (Options.LoopDirectIo)
            {
                arguments.Add("--direct-io=on");
            }

            arguments.Add(backingFile);
            var loop = (await HostTools.RunCheckedAsync("losetup", arguments, cancellationToken)).Trim();
            if (!loop.StartsWith("/dev/loop", StringComparison.Ordinal) || BlockSysfs.LoopBackingFile(loop) != backingFile)
            {
                throw new HostAttachException(HostAttachError.DeviceFailed, $"losetup reported '{loop}', which is not a loop device backed by {backingFile}") { VolumeName = volume };
            }

            var size = BlockSysfs.SizeBytes(loop);
            if (size != spec.DeviceSizeBytes)
            {
                throw new HostAttachException(HostAttachError.DeviceFailed, $"{loop} has {size} bytes, expected {spec.DeviceSizeBytes}") { VolumeName = volume };
            }

            var directIo = BlockSysfs.LoopDirectIo(loop);
            if (Options.LoopDirectIo && !directIo)
            {
                HostLog.NoDirectIo(Logger, volume, loop);
            }

            var state = new AttachmentState
            {
                VolumeName = volume,
                Method = served is null ? AttachMethod.NbdFuseLoop : AttachMethod.FuseLoop,
                NbdUnixSocket = spec.NbdUnixSocket,
                ExportName = spec.ExportName,
                SizeBytes = spec.DeviceSizeBytes,
                DevicePath = loop,
                FuseMountPoint = fuseMountPoint,
                BackingFile = backingFile,
                NbdfusePid = pid,
                DirectIo = directIo,
                AttachedAt = DateTimeOffset.UtcNow,
                RelaySocket = relaySocket,
                RelayPid = relayPid,
            };
            AttachmentLayout.Write(Layout.StateFileOf(volume), state);
            if (served is not null)
            {
                _served[volume] = served;
            }

            return state.ToAttachedDevice(directory);
        }
        catch (Exception ex)
        {
            HostLog.AttachFailed(Logger, volume, ex);
            await Cleaner.RemoveAsync(volume, pid, CancellationToken.None);
            if (served is not null)
            {
                await served.DisposeAsync();
            }

            throw;
        }
    }

    private protected override Task<AttachmentState> ResizeCoreAsync(AttachmentState state, long newSizeBytes, CancellationToken cancellationToken)
    {
        if (!IsDeviceOurs(state))
        {
            throw new HostAttachException(HostAttachError.DeviceFailed,
                $"{state.DevicePath} is no longer backed by {state.BackingFile}; detach and attach '{state.VolumeName}' again")
            {
                VolumeName = state.VolumeName,
            };
        }

        var ceiling = new FileInfo(state.BackingFile!).Length;
        if (newSizeBytes > ceiling)
        {
            throw Invalid(state.VolumeName, $"cannot grow '{state.VolumeName}' to {newSizeBytes} bytes: its export advertises {ceiling} bytes");
        }

        HostNative.SetLoopSizeLimit(state.DevicePath, newSizeBytes);
        var size = BlockSysfs.SizeBytes(state.DevicePath);
        if (size != newSizeBytes)
        {
            throw new HostAttachException(HostAttachError.DeviceFailed,
                $"{state.DevicePath} shows {size} bytes after setting its size limit to {newSizeBytes}")
            {
                VolumeName = state.VolumeName,
            };
        }

        return Task.FromResult(state with { SizeBytes = newSizeBytes });
    }

    private protected override bool IsDeviceOurs(AttachmentState state) =>
        state.BackingFile is not null && BlockSysfs.LoopBackingFile(state.DevicePath) == state.BackingFile;

    private protected override bool OutlivedDaemon(AttachmentState state) =>
        state is { Method: AttachMethod.NbdFuseLoop, RelaySocket: { } socket, RelayPid: { } relay, NbdfusePid: { } nbdfuse, BackingFile: { } backingFile, FuseMountPoint: { } fuse }
        && socket == Layout.RelaySocketOf(state.VolumeName)
        && HostNative.IsAlive(relay) && AttachmentCleaner.IsRelayFor(relay, socket)
        && HostNative.IsAlive(nbdfuse) && AttachmentCleaner.IsNbdfuseFor(nbdfuse, backingFile)
        && MountTable.At(fuse) is not null
        && IsDeviceOurs(state);

    private protected override async Task DetachCoreAsync(AttachmentState state, CancellationToken cancellationToken)
    {
        var volume = state.VolumeName;
        if (IsDeviceOurs(state))
        {
            await HostTools.RunCheckedAsync("losetup", ["-d", state.DevicePath], cancellationToken);
            // The loop is released when its last opener closes it; udev probes may hold it briefly.
            if (!await PollAsync(() => !IsDeviceOurs(state), Options.DeviceTimeout, cancellationToken))
            {
                throw new HostAttachException(HostAttachError.Busy,
                    $"{state.DevicePath} of '{volume}' is still open by some process; it is released when closed, then detach again")
                {
                    VolumeName = volume,
                };
            }
        }

        var fuseMountPoint = state.FuseMountPoint ?? Layout.FuseMountPointOf(volume);
        if (MountTable.At(fuseMountPoint) is not null)
        {
            // umount(8) as root removes any FUSE mount, nbdfuse's and slabd's own (which is not fusermount's).
            var result = await HostTools.RunAsync("umount", [fuseMountPoint], cancellationToken);
            if (!result.Succeeded)
            {
                throw MountTable.At(fuseMountPoint) is not null
                    ? new HostAttachException(HostAttachError.Busy, $"the FUSE file of '{volume}' is still in use: {result.Diagnostic}") { VolumeName = volume }
                    : HostTools.Failed("umount", [fuseMountPoint], result);
            }
        }

        if (_served.TryRemove(volume, out var served))
        {
            await served.DisposeAsync();
        }

        var pids = new[] { state.NbdfusePid, AttachmentCleaner.ReadPidFile(Layout.PidFileOf(volume)) }
            .OfType<int>()
            .Distinct()
            .Where(pid => state.BackingFile is not null && AttachmentCleaner.IsNbdfuseFor(pid, state.BackingFile));
        foreach (var pid in pids)
        {
            if (!await HostNative.WaitForProcessExitAsync(pid, Options.ProcessExitTimeout, cancellationToken))
            {
                HostLog.NbdfuseKilled(Logger, volume, pid, Options.ProcessExitTimeout);
                HostNative.KillHard(pid);
                await HostNative.WaitForProcessExitAsync(pid, Options.ProcessExitTimeout, cancellationToken);
            }
        }

        await Cleaner.EndRelayAsync(volume, state, waitForExit: true, cancellationToken);
    }

    /// <summary>
    /// Starts the reconnecting relay nbdfuse connects to instead of slabd: nbdkit's nbd plugin, which
    /// opens one connection to <paramref name="spec"/>'s export per client connection (so nbdfuse's
    /// multi-conn carries through), under the retry filter (a failed request reopens that connection
    /// and is sent again, once a second up to <paramref name="reconnect"/>) and the exitlast filter
    /// (it exits when nbdfuse, its only client, disconnects). It forks into the background once it
    /// listens; returns its pid (from its pid file).
    /// </summary>
    private async Task<int> StartRelayAsync(AttachSpec spec, string socket, TimeSpan reconnect, CancellationToken cancellationToken)
    {
        var volume = spec.VolumeName;
        var pidFile = Layout.RelayPidFileOf(volume);
        var logFile = Layout.RelayLogFileOf(volume);
        Directory.CreateDirectory(Layout.RelayRoot, OwnerOnly);
        File.Delete(socket);
        File.Delete(pidFile);
        var retries = Math.Max(1, (int)Math.Ceiling(reconnect.TotalSeconds));
        using var process = StartLogged(volume, logFile,
        [
            HostTools.Require("nbdkit"), "--unix", socket, "--pidfile", pidFile, "--log=stderr",
            "--filter=exitlast", "--filter=retry", "nbd", "socket=" + spec.NbdUnixSocket, "export=" + spec.ExportName,
            "retries=" + retries.ToString(CultureInfo.InvariantCulture), "retry-delay=1", "retry-exponential=no",
        ]);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new HostAttachException(HostAttachError.DeviceFailed, $"the nbdkit relay for '{volume}' did not start (exit code {process.ExitCode}): {ReadLogTail(logFile)}")
            {
                VolumeName = volume,
            };
        }

        // The background server writes its pid file once it serves.
        if (!await PollAsync(() => AttachmentCleaner.ReadPidFile(pidFile) is not null, Options.DeviceTimeout, cancellationToken))
        {
            throw new HostAttachException(HostAttachError.DeviceFailed, $"the nbdkit relay for '{volume}' did not become ready within {Options.DeviceTimeout.TotalSeconds:0} s: {ReadLogTail(logFile)}")
            {
                VolumeName = volume,
            };
        }

        return AttachmentCleaner.ReadPidFile(pidFile)!.Value;
    }

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Starts nbdfuse and waits until it serves (its pid file appears) or exits.</summary>
    private async Task<int> StartNbdfuseAsync(AttachSpec spec, string uri, Action<int> started, CancellationToken cancellationToken)
    {
        var volume = spec.VolumeName;
        var pidFile = Layout.PidFileOf(volume);
        var logFile = Layout.LogFileOf(volume);
        using var process = StartLogged(volume, logFile, [HostTools.Require("nbdfuse"), "-P", pidFile, Layout.BackingFileOf(volume), uri]);
        started(process.Id);
        var exited = process.WaitForExitAsync(cancellationToken);

        // nbdfuse gives no event when it is ready other than its pid file: poll with bounded backoff.
        var deadline = Environment.TickCount64 + (long)Options.DeviceTimeout.TotalMilliseconds;
        var delay = 1;
        while (true)
        {
            if (AttachmentCleaner.ReadPidFile(pidFile) is { } pid)
            {
                return pid;
            }

            if (exited.IsCompleted)
            {
                await exited; // surfaces cancellation
                throw new HostAttachException(HostAttachError.DeviceFailed,
                    $"nbdfuse could not serve export '{spec.ExportName}' on {spec.NbdUnixSocket} (exit code {process.ExitCode}): {ReadLogTail(logFile)}")
                {
                    VolumeName = volume,
                };
            }

            if (Environment.TickCount64 > deadline)
            {
                throw new HostAttachException(HostAttachError.DeviceFailed,
                    $"nbdfuse did not become ready within {Options.DeviceTimeout.TotalSeconds:0} s: {ReadLogTail(logFile)}")
                {
                    VolumeName = volume,
                };
            }

            await Task.WhenAny(exited, Task.Delay(delay, cancellationToken));
            cancellationToken.ThrowIfCancellationRequested();
            delay = Math.Min(delay * 2, 50);
        }
    }

    /// <summary>
    /// Starts <paramref name="argv"/> as a child with stdin /dev/null and its output appended to
    /// <paramref name="logFile"/> (not tied to slabd's pipes, so it may outlive slabd), in the C locale.
    /// </summary>
    private static Process StartLogged(string volume, string logFile, IReadOnlyList<string> argv)
    {
        var startInfo = new ProcessStartInfo(HostTools.Require("sh")) { UseShellExecute = false };
        foreach (var argument in (string[])["-c", LaunchScript, logFile, .. argv])
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment["LC_ALL"] = "C";
        return Process.Start(startInfo)
            ?? throw new HostAttachException(HostAttachError.DeviceFailed, $"could not start {Path.GetFileName(argv[0])}") { VolumeName = volume };
    }

    private static string ReadLogTail(string logFile)
    {
        try
        {
            var text = File.ReadAllText(logFile).Trim();
            return text.Length == 0 ? "(no output)" : text.Length > 2000 ? text[^2000..] : text;
        }
        catch (IOException)
        {
            return "(no output)";
        }
    }

    /// <summary>Polls a condition the kernel raises no event for, with bounded exponential backoff.</summary>
    private static async Task<bool> PollAsync(Func<bool> condition, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var delay = 1;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
            {
                return false;
            }

            await Task.Delay(delay, cancellationToken);
            delay = Math.Min(delay * 2, 50);
        }

        return true;
    }
}
