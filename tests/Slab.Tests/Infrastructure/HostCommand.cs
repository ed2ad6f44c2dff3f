using System.Diagnostics;
using System.Text;

namespace Slab.Tests.Infrastructure;

/// <summary>Runs a host program from a test and captures its output.</summary>
public static class HostCommand
{
    public readonly record struct Result(int ExitCode, string Stdout, string Stderr)
    {
        public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
    }

    public static async Task<Result> RunAsync(string fileName, IEnumerable<string> arguments, TimeSpan? timeout = null, IDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["LC_ALL"] = "C";
        if (environment is not null)
        {
            foreach (var (key, value) in environment)
            {
                info.Environment[key] = value;
            }
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {fileName}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{fileName} {string.Join(' ', info.ArgumentList)} did not finish within {(timeout ?? TimeSpan.FromMinutes(5)).TotalSeconds} s");
        }

        return new Result(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Runs and asserts exit 0; returns stdout.</summary>
    public static async Task<string> CheckedAsync(string fileName, params string[] arguments)
    {
        var result = await RunAsync(fileName, arguments);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"{fileName} {string.Join(' ', arguments)} failed: {result}");
        }

        return result.Stdout;
    }

    /// <summary>Throws with the package name when a tool the test needs is missing.</summary>
    public static void RequireTool(string tool, string package)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':'))
        {
            if (File.Exists(Path.Combine(dir, tool)))
            {
                return;
            }
        }

        throw new InvalidOperationException($"{tool} is not installed: apt-get install {package} (scripts/test installs it)");
    }

    public static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }

    /// <summary>sha256 of the first <paramref name="length"/> bytes of a file.</summary>
    public static string Sha256OfFilePrefix(string path, long length)
    {
        using var stream = File.OpenRead(path);
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        while (length > 0)
        {
            var n = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, length));
            if (n == 0)
            {
                throw new EndOfStreamException($"{path} is shorter than the prefix");
            }

            hash.AppendData(buffer, 0, n);
            length -= n;
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>syncfs of the filesystem holding <paramref name="path"/>.</summary>
    public static async Task SyncAsync(string path)
    {
        var result = await RunAsync("sync", ["-f", path]);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"sync -f {path}: {result}");
        }
    }

    public static string Describe(IEnumerable<string> arguments) => new StringBuilder().AppendJoin(' ', arguments).ToString();
}
