extern alias cli;

using cli::Slab.Cli;

namespace Slab.Tests.Cli;

/// <summary>The outcome of one in-process slabctl run.</summary>
internal sealed record CliRun(int ExitCode, string Out, string Err);

/// <summary>Runs slabctl in-process with captured output and a controlled environment.</summary>
internal static class CliRunner
{
    /// <summary>An endpoint nothing listens on; only for commands that must fail before any call.</summary>
    public const string NowhereEndpoint = "unix:///nonexistent/slab-test/api.sock";

    public static async Task<CliRun> RunAsync(string? endpoint, params string[] args)
    {
        var env = new Dictionary<string, string?>();
        if (endpoint is not null)
            env["SLAB_ENDPOINT"] = endpoint;
        return await RunWithEnvironmentAsync(env, args);
    }

    public static async Task<CliRun> RunWithEnvironmentAsync(IReadOnlyDictionary<string, string?> env, params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        var code = await cli::Slab.Cli.Program.RunAsync(args, stdout, stderr, env);
        return new CliRun(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Splits "volume create v --size 10" on spaces (tests never need quoting).</summary>
    public static string[] Split(string commandLine) =>
        commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
}
