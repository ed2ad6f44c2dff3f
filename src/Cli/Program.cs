using System.Collections;

namespace Slab.Cli;

/// <summary>slabctl entry point.</summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        using var cancellation = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            // First Ctrl+C cancels the call in flight; a second one kills the process.
            e.Cancel = !cancellation.IsCancellationRequested;
            cancellation.Cancel();
        };
        var environment = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
            environment[(string)entry.Key] = entry.Value as string;
        return await CliApp.RunAsync(args, Console.Out, Console.Error, environment, cancellation.Token);
    }

    /// <summary>Runs one slabctl command line; returns the exit code (0 ok, 1 failed, 2 bad usage).</summary>
    internal static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, IReadOnlyDictionary<string, string?> environment) =>
        CliApp.RunAsync(args, stdout, stderr, environment, CancellationToken.None);
}
