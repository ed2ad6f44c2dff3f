namespace Slab.Cli.Parsing;

/// <summary>Flags every command accepts, anywhere on the command line.</summary>
internal static class GlobalFlags
{
    public const string DefaultEndpoint = "unix:///run/slab/api.sock";
    public const string EndpointEnvironmentVariable = "SLAB_ENDPOINT";

    public static readonly FlagSpec Endpoint = new()
    {
        Name = "endpoint",
        ValueName = "URL",
        Description = $"slabd API: unix:///path, tcp://host:port, http://host:port or host:port (env {EndpointEnvironmentVariable}; default {DefaultEndpoint})",
    };

    public static readonly FlagSpec Json = new()
    {
        Name = "json",
        Short = 'j',
        Description = "output JSON (lists are JSON arrays)",
    };

    public static readonly FlagSpec Help = new()
    {
        Name = "help",
        Short = 'h',
        Description = "show help for this command",
    };

    public static IReadOnlyList<FlagSpec> All { get; } = [Endpoint, Json, Help];
}
