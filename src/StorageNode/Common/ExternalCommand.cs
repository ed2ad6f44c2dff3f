using System.Diagnostics;
using System.Text;

namespace Slab.Common;

/// <summary>The outcome of an external command: exit code and captured output.</summary>
public readonly record struct CommandResult(int ExitCode, string StandardOutput, string StandardError)
{
    public bool Succeeded => ExitCode == 0;

    /// <summary>The stderr text (or stdout when stderr is empty), trimmed, for error messages.</summary>
    public string Diagnostic => (StandardError.Trim().Length > 0 ? StandardError : StandardOutput).Trim();
}

/// <summary>An external command failed; <see cref="Result"/> has its exit code and output.</summary>
public sealed class ExternalCommandException(string command, CommandResult result)
    : Exception($"'{command}' failed with exit code {result.ExitCode}: {result.Diagnostic}")
{
    public string Command { get; } = command;

    public CommandResult Result { get; } = result;
}

/// <summary>
/// Runs host tools (mkfs, mount, losetup, blkid, nbdfuse ...) without a shell: arguments are passed
/// as a list, so no quoting or injection issues. Control-plane only; never on the data path.
/// </summary>
public static class ExternalCommand
{
    /// <summary>Default time limit for one command.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Runs <paramref name="fileName"/> and returns its result whatever the exit code.</summary>
    /// <exception cref="ExternalCommandException">The program could not be started (exit code 127), or it timed out (124).</exception>
    public static async Task<CommandResult> RunAsync(
        string fileName,
        IReadOnlyList<string> arguments,
        CancellationToken cancellationToken,
        TimeSpan? timeout = null,
        string? standardInput = null)
    {
        var startInfo = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = standardInput is not null,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment["LC_ALL"] = "C";
        using var process = new Process { StartInfo = startInfo };
        var commandLine = Describe(fileName, arguments);
        try
        {
            if (!process.Start())
            {
                throw new ExternalCommandException(commandLine, new CommandResult(127, "", "could not start"));
            }
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new ExternalCommandException(commandLine, new CommandResult(127, "", $"{fileName} is not installed or not executable ({ex.Message})"));
        }

        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        if (standardInput is not null)
        {
            await process.StandardInput.WriteAsync(standardInput.AsMemory(), cancellationToken).ConfigureAwait(false);
            process.StandardInput.Close();
        }

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout ?? DefaultTimeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }

            cancellationToken.ThrowIfCancellationRequested();
            throw new ExternalCommandException(commandLine, new CommandResult(124, "", $"timed out after {(timeout ?? DefaultTimeout).TotalSeconds:0} s"));
        }

        return new CommandResult(process.ExitCode, await stdout.ConfigureAwait(false), await stderr.ConfigureAwait(false));
    }

    /// <summary>Runs the command and throws <see cref="ExternalCommandException"/> unless it exits 0.</summary>
    public static async Task<string> RunCheckedAsync(
        string fileName,
        IReadOnlyList<string> arguments,
        CancellationToken cancellationToken,
        TimeSpan? timeout = null)
    {
        var result = await RunAsync(fileName, arguments, cancellationToken, timeout).ConfigureAwait(false);
        if (!result.Succeeded)
        {
            throw new ExternalCommandException(Describe(fileName, arguments), result);
        }

        return result.StandardOutput;
    }

    private static string Describe(string fileName, IReadOnlyList<string> arguments)
    {
        var builder = new StringBuilder(fileName);
        foreach (var argument in arguments)
        {
            builder.Append(' ').Append(argument);
        }

        return builder.ToString();
    }
}
