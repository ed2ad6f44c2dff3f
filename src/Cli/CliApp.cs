using Grpc.Core;
using Slab.Cli.Commands;
using Slab.Cli.Connection;
using Slab.Cli.Parsing;

namespace Slab.Cli;

/// <summary>
/// slabctl: parses the command line, runs one command against slabd and maps the outcome to an
/// exit code: 0 success, 1 the operation failed (slabd said no, or could not be reached),
/// 2 the command line is wrong (nothing was sent).
/// </summary>
internal static class CliApp
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UsageError = 2;

    public static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, IReadOnlyDictionary<string, string?> environment) =>
        RunAsync(args, stdout, stderr, environment, CancellationToken.None);

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, IReadOnlyDictionary<string, string?> environment, CancellationToken cancellation)
    {
        var root = CommandTree.Build();
        var parse = Parser.Parse(root, args);
        var command = parse.Command;

        if (parse.HelpRequested)
        {
            HelpWriter.Write(command, stdout);
            return Success;
        }
        if (parse.Error is not null)
            return Usage(command, parse.Error, stderr);
        if (command.Handler is null)
        {
            // Bare "slabctl" asks for help, as pxctl does; "slabctl volume" is missing a word.
            if (command.Parent is null && args.Length == 0)
            {
                HelpWriter.Write(command, stdout);
                return Success;
            }
            var choices = string.Join(", ", command.Children.Select(c => c.Name));
            return Usage(command, $"missing command for \"{command.Path}\" (one of: {choices})", stderr);
        }

        var endpointText = parse.Value(GlobalFlags.Endpoint.Name)
            ?? (environment.TryGetValue(GlobalFlags.EndpointEnvironmentVariable, out var env) && !string.IsNullOrWhiteSpace(env) ? env : null)
            ?? GlobalFlags.DefaultEndpoint;
        if (!Endpoint.TryParse(endpointText, out var endpoint, out var endpointError))
            return Usage(command, $"invalid endpoint \"{endpointText}\": {endpointError}", stderr);

        ApiConnection? connection = null;
        try
        {
            var context = new CommandContext(parse, stdout, stderr, () => connection = new ApiConnection(endpoint, cancellation));
            return await command.Handler(context);
        }
        catch (UsageException ex)
        {
            return Usage(command, ex.Message, stderr);
        }
        catch (RpcException ex)
        {
            await stderr.WriteLineAsync(Describe(ex, endpoint));
            return Failure;
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            await stderr.WriteLineAsync("Error: interrupted");
            return Failure;
        }
        finally
        {
            connection?.Dispose();
        }
    }

    /// <summary>The one line printed for a failed call.</summary>
    internal static string Describe(RpcException ex, Endpoint endpoint)
    {
        if (ApiConnection.IsUnreachable(ex, out var reason))
        {
            // A missing socket file surfaces as "Cannot assign requested address"; say what it means.
            if (endpoint.SocketPath is { } path && !File.Exists(path))
                reason = $"socket {path} does not exist";
            return $"Error: cannot reach slabd at {endpoint.Original}: {reason}. Is slabd running?";
        }
        if (ex.StatusCode == StatusCode.DeadlineExceeded)
            return "Error: slabd did not answer in time (deadline exceeded)";
        if (ex.StatusCode == StatusCode.Cancelled)
            return "Error: interrupted";
        // A slabd older than slabctl: the service or method is missing, not the thing it names.
        if (ex.StatusCode == StatusCode.Unimplemented)
            return $"Error: slabd at {endpoint.Original} does not support this command (is it older than slabctl?)";
        var detail = string.IsNullOrWhiteSpace(ex.Status.Detail) ? ex.StatusCode.ToString() : ex.Status.Detail;
        return $"Error: {detail}";
    }

    private static int Usage(CommandNode command, string message, TextWriter stderr)
    {
        stderr.WriteLine($"Error: {message}");
        HelpWriter.WriteUsageHint(command, stderr);
        return UsageError;
    }
}
