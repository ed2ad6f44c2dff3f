using Xunit;

namespace Slab.Tests.Cli;

/// <summary>
/// Base of the tests that run slabctl against a fresh <see cref="FakeSlabServer"/> (one per test):
/// running a command line and the assertions on its outcome and on what reached the server.
/// </summary>
public abstract class FakeServerTest : IAsyncLifetime
{
    private protected FakeSlabServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await FakeSlabServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();

    private protected Task<CliRun> Run(string commandLine) => CliRunner.RunAsync(Server.UnixEndpoint, CliRunner.Split(commandLine));

    /// <summary>The one call the server received, of <paramref name="method"/>, and its request.</summary>
    private protected T Single<T>(string method)
    {
        var call = Assert.Single(Server.State.Calls);
        Assert.Equal(method, call.Method);
        return Assert.IsType<T>(call.Request);
    }

    private protected static void AssertOk(CliRun run)
    {
        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}: {run.Err}");
        Assert.Equal("", run.Err);
    }

    private protected static void AssertFailed(CliRun run, string error)
    {
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"Error: {error}\n", run.Err.ReplaceLineEndings("\n"));
    }

    /// <summary>Exit 2, "Error: ..." containing <paramref name="error"/>, the usage hint, and nothing sent.</summary>
    private protected void AssertUsageError(CliRun run, string error)
    {
        Assert.Equal(2, run.ExitCode);
        Assert.Equal("", run.Out);
        var lines = run.Err.ReplaceLineEndings("\n").Split('\n');
        Assert.StartsWith("Error: ", lines[0], StringComparison.Ordinal);
        Assert.Contains(error, lines[0], StringComparison.Ordinal);
        Assert.StartsWith("Usage: slabctl", lines[1], StringComparison.Ordinal);
        Assert.Contains("--help", lines[2], StringComparison.Ordinal);
        Assert.Empty(Server.State.Calls);
    }

    /// <summary>The output with "\n" line endings.</summary>
    private protected static string Text(CliRun run) => run.Out.ReplaceLineEndings("\n");

    /// <summary>The output's lines, without the final empty one.</summary>
    private protected static string[] Lines(CliRun run) => Text(run).TrimEnd('\n').Split('\n');
}
