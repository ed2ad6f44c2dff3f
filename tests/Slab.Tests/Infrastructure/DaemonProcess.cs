using System.Diagnostics;
using System.Text;
using Tmds.Linux;

namespace Slab.Tests.Infrastructure;

/// <summary>A daemon's output, kept across its restarts by its owner. Thread-safe.</summary>
public sealed class ProcessLog
{
    private readonly StringBuilder _text = new();
    private readonly Lock _lock = new();

    public void Append(string line)
    {
        lock (_lock)
        {
            _text.AppendLine(line);
        }
    }

    public override string ToString()
    {
        lock (_lock)
        {
            return _text.ToString();
        }
    }
}

/// <summary>
/// One run of a long-running program under test (slabd, slab-csi, dockerd): its stdout and stderr go
/// to a <see cref="ProcessLog"/>; it is ready when it logs a marker line; it stops with SIGTERM and,
/// when disposed of, is killed if it does not stop in time.
/// </summary>
public sealed class DaemonProcess : IDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private DaemonProcess(Process process) => _process = process;

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Starts <paramref name="fileName"/>; <see cref="WaitReadyAsync"/> completes once a line containing <paramref name="readyMarker"/> is logged.</summary>
    public static DaemonProcess Start(string fileName, IEnumerable<string> arguments, ProcessLog log, string? readyMarker, string what)
    {
        var info = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var daemon = new DaemonProcess(process);
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            log.Append(line);
            if (readyMarker is not null && line.Contains(readyMarker, StringComparison.Ordinal))
            {
                daemon._ready.TrySetResult();
            }
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.Exited += (_, _) => daemon._ready.TrySetException(new InvalidOperationException($"{what} exited during start-up:\n{log}"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return daemon;
    }

    /// <summary>Completes when the ready marker was logged; throws when the process exited first or <paramref name="timeout"/> passed.</summary>
    public Task WaitReadyAsync(TimeSpan timeout) => _ready.Task.WaitAsync(timeout);

    public void Signal(int signal) => _ = LibC.kill(_process.Id, signal);

    /// <summary>SIGCONT (a stopped process would not act on SIGTERM), SIGTERM, and waits; throws <see cref="OperationCanceledException"/> after <paramref name="timeout"/>.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        if (!_process.HasExited)
        {
            Signal(LibC.SIGCONT);
            Signal(LibC.SIGTERM);
            using var cts = new CancellationTokenSource(timeout);
            await _process.WaitForExitAsync(cts.Token);
        }

        return _process.ExitCode;
    }

    /// <summary>As <see cref="StopAsync"/>, but kills the process tree when it does not stop within <paramref name="timeout"/>.</summary>
    public async Task StopOrKillAsync(TimeSpan timeout)
    {
        try
        {
            await StopAsync(timeout);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    /// <summary>SIGKILL and wait: a crash.</summary>
    public async Task KillAsync()
    {
        Signal(LibC.SIGKILL);
        await _process.WaitForExitAsync();
    }

    public void Dispose() => _process.Dispose();
}
