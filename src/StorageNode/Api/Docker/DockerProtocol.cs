using System.Text.Json.Serialization;

namespace Slab.Api.Docker;

// Docker's volume plugin protocol v1 (https://docs.docker.com/engine/extend/plugins_volume/):
// every call is an HTTP POST of a JSON object to /Plugin.Activate or /VolumeDriver.<Method>;
// every answer is a JSON object whose "Err" is empty on success and a message for people otherwise.
// Property names are Docker's (PascalCase), matched exactly. Members Docker may add later are
// skipped; a member of the wrong type, a missing required member or malformed JSON is refused.

/// <summary>Create: <c>Opts</c> holds <c>--opt k=v</c> (null when none were given).</summary>
public sealed record CreateRequest
{
    public required string Name { get; init; }

    public Dictionary<string, string>? Opts { get; init; }
}

/// <summary>Remove, Path, Get.</summary>
public sealed record NameRequest
{
    public required string Name { get; init; }
}

/// <summary>Mount and Unmount: <c>ID</c> is unique per container (per mount) and the same in the matching Unmount.</summary>
public sealed record MountRequest
{
    public required string Name { get; init; }

    [JsonPropertyName("ID")]
    public required string Id { get; init; }
}

public sealed record ActivateResponse(string[] Implements);

/// <summary>Create, Remove, Unmount; and any failure.</summary>
public sealed record ErrResponse(string Err);

public sealed record MountResponse(string Mountpoint, string Err = "");

public sealed record DockerVolume
{
    public required string Name { get; init; }

    public string Mountpoint { get; init; } = "";

    /// <summary>RFC 3339.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? CreatedAt { get; init; }

    /// <summary>Shown by <c>docker volume inspect</c> as the volume's Status.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Dictionary<string, object>? Status { get; init; }
}

public sealed record GetResponse(DockerVolume Volume, string Err = "");

public sealed record ListResponse(IReadOnlyList<DockerVolume> Volumes, string Err = "");

public sealed record Capabilities(string Scope);

public sealed record CapabilitiesResponse(Capabilities Capabilities);

/// <summary>The mount IDs slabd holds for Docker, per Slab volume name (RUN/docker/mounts.json).</summary>
public sealed record MountIdFile
{
    public int Version { get; init; } = 1;

    public Dictionary<string, string[]> Volumes { get; init; } = [];
}

[JsonSourceGenerationOptions(
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip,
    PropertyNameCaseInsensitive = false,
    AllowDuplicateProperties = false,
    RespectNullableAnnotations = true,
    RespectRequiredConstructorParameters = true,
    NumberHandling = JsonNumberHandling.Strict)]
[JsonSerializable(typeof(CreateRequest))]
[JsonSerializable(typeof(NameRequest))]
[JsonSerializable(typeof(MountRequest))]
[JsonSerializable(typeof(ActivateResponse))]
[JsonSerializable(typeof(ErrResponse))]
[JsonSerializable(typeof(MountResponse))]
[JsonSerializable(typeof(GetResponse))]
[JsonSerializable(typeof(ListResponse))]
[JsonSerializable(typeof(CapabilitiesResponse))]
[JsonSerializable(typeof(MountIdFile))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(long))]
[JsonSerializable(typeof(int))]
[JsonSerializable(typeof(bool))]
internal sealed partial class DockerJson : JsonSerializerContext;
