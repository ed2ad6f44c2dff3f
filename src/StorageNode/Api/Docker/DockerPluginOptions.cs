namespace Slab.Api.Docker;

/// <summary>Where the Docker volume plugin listens and keeps its state.</summary>
public sealed record DockerPluginOptions
{
    /// <summary>Where Docker looks for plugin sockets; the plugin is on by default when this directory exists.</summary>
    public const string DockerPluginDirectory = "/run/docker/plugins";

    public const string DefaultSocketPath = DockerPluginDirectory + "/slab.sock";

    /// <summary>The unix socket Docker connects to (HTTP/1.1, the plugin protocol).</summary>
    public required string SocketPath { get; init; }

    /// <summary>RUN/docker: volumes are mounted at <c>volumes/NAME</c>, the mount IDs are kept in <c>mounts.json</c>.</summary>
    public required string StateDirectory { get; init; }

    /// <summary>slabd's own gRPC socket, which the plugin calls.</summary>
    public required string ApiSocketPath { get; init; }

    /// <summary>Largest request body accepted; Docker's requests are a few hundred bytes.</summary>
    public int MaxRequestBytes { get; init; } = 1 << 20;

    public string MountRoot => Path.Combine(StateDirectory, "volumes");

    public string MountIdFile => Path.Combine(StateDirectory, "mounts.json");

    /// <summary>Where the volume named <paramref name="volume"/> (a valid Slab name) is mounted for Docker.</summary>
    public string MountPointOf(string volume) => Path.Combine(MountRoot, volume);
}
