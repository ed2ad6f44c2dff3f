using System.Globalization;
using Microsoft.Extensions.Logging;

using Slab.Common;

namespace Slab.Host;

/// <summary>
/// Forcibly removes one attachment directory and everything it may have made, whole or half-made,
/// of either method: the undo of a failed attach and start-up recovery after a crash. Every step
/// tolerates "already gone", so running it twice is harmless.
/// </summary>
internal sealed class AttachmentCleaner(AttachmentLayout layout, HostOptions options, ILogger logger)
{
    /// <summary>
    /// Ends the relay, lazily unmounts the device's mounts, detaches it (loop or nbd), lazily unmounts
    /// the FUSE mount, ends nbdfuse, deletes the directory. Never throws except on cancellation; a step that fails
    /// makes the result incomplete and keeps the directory.
    /// </summary>
    /// <param name="knownPid">nbdfuse's pid when the caller started it (it may not have written its pid file yet).</param>
    public async Task<StaleAttachmentRemoval> RemoveAsync(string volumeName, int? knownPid, CancellationToken cancellationToken)
    {
        var actions = new List<string>();
        var complete = true;
        var state = AttachmentLayout.TryRead(layout.StateFileOf(volumeName));
        var backingFile = layout.BackingFileOf(volumeName);
        var fuseMountPoint = layout.FuseMountPointOf(volumeName);

        async Task Step(string description, Func<Task<string?>> step)
        {
            try
            {
                var done = await step();
                if (done is not null)
                {
                    actions.Add(done);
                    HostLog.StaleAction(logger, volumeName, done);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex)
            {
                complete = false;
                actions.Add($"failed to {description}: {ex.Message}");
                HostLog.UndoStepFailed(logger, volumeName, description, ex);
            }
        }

        // 0. The relay between nbdfuse and slabd first: while it lives, the device's I/O waits for a
        //    slabd that will not serve it (the unmounts and detaches below would wait with it); once
        //    it is gone that I/O fails at once, as it would have without a relay.
        await Step("end the relay", () => EndRelayAsync(volumeName, state, waitForExit: false, cancellationToken));

        // 1. Kernel NBD device recorded in the state.
        if (state is { Method: AttachMethod.KernelNbd } && BlockSysfs.NbdConnected(state.DevicePath))
        {
            await UnmountLazilyAsync(state.DevicePath, Step, cancellationToken);
            await Step($"disconnect {state.DevicePath}", async () =>
            {
                await HostTools.RunCheckedAsync("nbd-client", ["-d", state.DevicePath], cancellationToken);
                return $"disconnected {state.DevicePath}";
            });
        }

        // 2. Loop devices backed by this attachment's FUSE file (found through sysfs, so a crash
        //    between losetup and the state write is covered too).
        foreach (var loop in BlockSysfs.LoopsBackedBy(backingFile))
        {
            await UnmountLazilyAsync(loop, Step, cancellationToken);
            await Step($"detach {loop}", async () =>
            {
                if (BlockSysfs.LoopBackingFile(loop) != backingFile)
                {
                    return null;
                }

                await HostTools.RunCheckedAsync("losetup", ["-d", loop], cancellationToken);
                return $"detached {loop}";
            });
        }

        // 3. The FUSE mount.
        if (MountTable.At(fuseMountPoint) is not null)
        {
            await Step($"unmount FUSE at {fuseMountPoint}", async () =>
            {
                // umount(8), not fusermount3: slabd's own FUSE mounts (fuse-loop) are not fusermount's.
                await HostTools.RunCheckedAsync("umount", ["-l", fuseMountPoint], cancellationToken);
                return $"lazily unmounted FUSE {fuseMountPoint}";
            });
        }

        // 4. nbdfuse itself: it exits once unmounted; kill it if it does not.
        foreach (var pid in NbdfusePids(volumeName, state, knownPid))
        {
            await Step($"end nbdfuse {pid}", async () =>
            {
                if (await HostNative.WaitForProcessExitAsync(pid, options.ProcessExitTimeout, cancellationToken))
                {
                    return $"nbdfuse {pid} exited";
                }

                HostLog.NbdfuseKilled(logger, volumeName, pid, options.ProcessExitTimeout);
                HostNative.KillHard(pid);
                return await HostNative.WaitForProcessExitAsync(pid, options.ProcessExitTimeout, cancellationToken)
                    ? $"killed nbdfuse {pid}"
                    : throw new HostAttachException(HostAttachError.DeviceFailed, $"nbdfuse {pid} did not exit after SIGKILL");
            });
        }

        // 5. The directory, unless something is still mounted inside it.
        var directory = layout.DirectoryOf(volumeName);
        if (complete && Directory.Exists(directory))
        {
            await Step($"remove {directory}", () =>
            {
                if (MountTable.Read().Any(m => m.MountPoint.StartsWith(directory + "/", StringComparison.Ordinal)))
                {
                    throw new HostAttachException(HostAttachError.Busy, $"something is still mounted under {directory}");
                }

                Directory.Delete(directory, recursive: true);
                return Task.FromResult<string?>($"removed {directory}");
            });
        }

        if (!complete)
        {
            HostLog.StaleFailed(logger, volumeName, new HostAttachException(HostAttachError.DeviceFailed, string.Join("; ", actions)));
        }

        return new StaleAttachmentRemoval(volumeName, actions, complete);
    }

    /// <summary>
    /// Ends the attachment's relay processes (state, pid file, or any nbdkit naming its socket) and
    /// deletes the socket; what was done, or null when there was none. With
    /// <paramref name="waitForExit"/> (a detach, after nbdfuse has gone) a relay gets
    /// <see cref="HostOptions.ProcessExitTimeout"/> to exit by itself, as it does when its last client
    /// disconnects; else it is killed at once.
    /// </summary>
    public async Task<string?> EndRelayAsync(string volumeName, AttachmentState? state, bool waitForExit, CancellationToken cancellationToken)
    {
        var socket = layout.RelaySocketOf(volumeName);
        var candidates = new HashSet<int>();
        if (state?.RelayPid is { } recorded)
        {
            candidates.Add(recorded);
        }

        if (ReadPidFile(layout.RelayPidFileOf(volumeName)) is { } fromFile)
        {
            candidates.Add(fromFile);
        }

        candidates.UnionWith(ProcessIds());
        string? done = null;
        foreach (var pid in candidates.Where(pid => IsRelayFor(pid, socket) && HostNative.IsAlive(pid)).Order())
        {
            if (waitForExit)
            {
                if (await HostNative.WaitForProcessExitAsync(pid, options.ProcessExitTimeout, cancellationToken))
                {
                    done = $"relay {pid} exited";
                    continue;
                }

                HostLog.RelayKilled(logger, volumeName, pid, options.ProcessExitTimeout);
            }

            HostNative.KillHard(pid);
            done = await HostNative.WaitForProcessExitAsync(pid, options.ProcessExitTimeout, cancellationToken)
                ? $"killed relay {pid}"
                : throw new HostAttachException(HostAttachError.DeviceFailed, $"relay {pid} did not exit after SIGKILL");
        }

        if (File.Exists(socket))
        {
            File.Delete(socket);
            done ??= $"removed {socket}";
        }

        return done;
    }

    /// <summary>Deletes relay sockets under <c>RUN/relay</c> that belong to none of <paramref name="volumeNames"/> (start-up recovery).</summary>
    public void RemoveOrphanRelaySockets(IEnumerable<string> volumeNames)
    {
        if (!Directory.Exists(layout.RelayRoot))
        {
            return;
        }

        var live = volumeNames.Select(layout.RelaySocketOf).ToHashSet(StringComparer.Ordinal);
        foreach (var socket in Directory.EnumerateFiles(layout.RelayRoot).Where(path => !live.Contains(path)))
        {
            if (!ProcessIds().Any(pid => IsRelayFor(pid, socket)))
            {
                File.Delete(socket);
            }
        }
    }

    /// <summary>Whether <paramref name="pid"/> is an nbdkit relay listening on <paramref name="socket"/> (guards against pid reuse).</summary>
    internal static bool IsRelayFor(int pid, string socket) => Runs(pid, "nbdkit", socket);

    private static IEnumerable<int> ProcessIds()
    {
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                yield return pid;
            }
        }
    }

    private static async Task UnmountLazilyAsync(string device, Func<string, Func<Task<string?>>, Task> step, CancellationToken cancellationToken)
    {
        if (BlockSysfs.DeviceNumber(device) is not { } number)
        {
            return;
        }

        foreach (var mountPoint in MountTable.MountPointsOf(number.Major, number.Minor))
        {
            await step($"unmount {mountPoint}", async () =>
            {
                await HostTools.RunCheckedAsync("umount", ["-l", mountPoint], cancellationToken);
                return $"lazily unmounted {mountPoint} ({device})";
            });
        }
    }

    /// <summary>Live nbdfuse processes serving this attachment's FUSE file: the known pid, the pid file's, and any found in /proc.</summary>
    private IReadOnlyList<int> NbdfusePids(string volumeName, AttachmentState? state, int? knownPid)
    {
        var backingFile = layout.BackingFileOf(volumeName);
        var candidates = new HashSet<int>();
        if (knownPid is { } known)
        {
            candidates.Add(known);
        }

        if (state?.NbdfusePid is { } recorded)
        {
            candidates.Add(recorded);
        }

        if (ReadPidFile(layout.PidFileOf(volumeName)) is { } fromFile)
        {
            candidates.Add(fromFile);
        }

        candidates.UnionWith(ProcessIds());

        // The caller's own child may still be the sh that is about to exec nbdfuse.
        return candidates
            .Where(pid => (pid == knownPid ? HostNative.CommandLine(pid).Contains(backingFile, StringComparer.Ordinal) : IsNbdfuseFor(pid, backingFile))
                && HostNative.IsAlive(pid))
            .Order()
            .ToList();
    }

    /// <summary>Whether <paramref name="pid"/> is an nbdfuse serving <paramref name="backingFile"/> (guards against pid reuse).</summary>
    internal static bool IsNbdfuseFor(int pid, string backingFile) => Runs(pid, "nbdfuse", backingFile);

    /// <summary>Whether <paramref name="pid"/> runs <paramref name="program"/> with <paramref name="argument"/> among its arguments.</summary>
    private static bool Runs(int pid, string program, string argument)
    {
        var argv = HostNative.CommandLine(pid);
        return argv.Count > 0
            && string.Equals(Path.GetFileName(argv[0]), program, StringComparison.Ordinal)
            && argv.Contains(argument, StringComparer.Ordinal);
    }

    internal static int? ReadPidFile(string pidFile)
    {
        try
        {
            return int.TryParse(File.ReadAllText(pidFile).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid > 0 ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }
}
