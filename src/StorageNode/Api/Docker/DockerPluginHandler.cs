using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Api.Docker;

/// <summary>One answer to Docker: an HTTP status and a JSON body.</summary>
public readonly record struct DockerReply(int Status, byte[] Body);

/// <summary>
/// Docker's volume plugin protocol v1 over <see cref="ISlabVolumeApi"/>, independent of HTTP (the
/// endpoint hands it the path and body). Every answer is JSON in Docker's shape; a failure is
/// <c>{"Err": "..."}</c> with HTTP 200 for a well-formed call Slab refuses (Docker shows the
/// message), 400 for a body that is not the call's JSON, 404 for an unknown call. Nothing a client
/// sends can throw out of <see cref="HandleAsync"/>: unexpected failures are logged and answered as
/// an Err. Calls on one volume are serialized (mount counts change under the volume's lock); calls
/// on different volumes run concurrently.
/// </summary>
public sealed partial class DockerPluginHandler
{
    private readonly ISlabVolumeApi _api;
    private readonly DockerMountRegistry _mounts;
    private readonly DockerPluginOptions _options;
    private readonly Func<string, bool> _isMountPoint;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _volumeLocks = new(StringComparer.Ordinal);

    /// <param name="isMountPoint">Whether a path is a mount point in slabd's mount namespace (tests replace it).</param>
    public DockerPluginHandler(ISlabVolumeApi api, DockerMountRegistry mounts, DockerPluginOptions options, ILogger<DockerPluginHandler> logger, Func<string, bool>? isMountPoint = null)
    {
        _api = api;
        _mounts = mounts;
        _options = options;
        _logger = logger;
        _isMountPoint = isMountPoint ?? MountTable.IsMountPoint;
    }

    /// <summary>Answers the call named by <paramref name="path"/> (e.g. <c>/VolumeDriver.Mount</c>) with request body <paramref name="body"/>.</summary>
    public async Task<DockerReply> HandleAsync(string path, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        var method = path.TrimStart('/');
        try
        {
            return method switch
            {
                "Plugin.Activate" => Ok(new ActivateResponse(["VolumeDriver"]), DockerJson.Default.ActivateResponse),
                "VolumeDriver.Capabilities" => Ok(new CapabilitiesResponse(new Capabilities("global")), DockerJson.Default.CapabilitiesResponse),
                "VolumeDriver.Create" => await CreateAsync(Read(method, body, DockerJson.Default.CreateRequest), cancellationToken).ConfigureAwait(false),
                "VolumeDriver.Remove" => await RemoveAsync(Read(method, body, DockerJson.Default.NameRequest), cancellationToken).ConfigureAwait(false),
                "VolumeDriver.Mount" => await MountAsync(Read(method, body, DockerJson.Default.MountRequest), cancellationToken).ConfigureAwait(false),
                "VolumeDriver.Unmount" => await UnmountAsync(Read(method, body, DockerJson.Default.MountRequest), cancellationToken).ConfigureAwait(false),
                "VolumeDriver.Path" => PathOf(Read(method, body, DockerJson.Default.NameRequest)),
                "VolumeDriver.Get" => await GetAsync(Read(method, body, DockerJson.Default.NameRequest), cancellationToken).ConfigureAwait(false),
                "VolumeDriver.List" => await ListAsync(cancellationToken).ConfigureAwait(false),
                _ => Error(404, $"unknown call {path}: this is Slab's Docker volume plugin (protocol v1: /Plugin.Activate, /VolumeDriver.*)"),
            };
        }
        catch (BadRequestException e)
        {
            LogBadRequest(_logger, method, e.Message);
            return Error(400, e.Message);
        }
        catch (SlabException e)
        {
            if (e.Code == SlabErrorCode.NotFound && method == "VolumeDriver.Get")
            {
                LogNotFound(_logger, e.Message); // Docker asks before it creates: not a refusal
            }
            else
            {
                LogRefused(_logger, method, e.Code, e.Message);
            }

            return Error(200, e.Message);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Error(200, "the call was cancelled (Docker closed the connection or slabd is stopping)");
        }
        catch (Exception e)
        {
            LogUnexpected(_logger, method, e);
            return Error(200, $"internal error in slabd's Docker plugin ({method}): {e.Message}");
        }
    }

    /// <summary>Parses a request body strictly; an empty body is refused like malformed JSON.</summary>
    private static T Read<T>(string method, ReadOnlyMemory<byte> body, JsonTypeInfo<T> type)
        where T : class
    {
        try
        {
            return JsonSerializer.Deserialize(body.Span, type) ?? throw new BadRequestException($"{method}: the request is not the expected JSON (null instead of an object)");
        }
        catch (JsonException e)
        {
            throw new BadRequestException($"{method}: the request is not the expected JSON ({e.Message})");
        }
    }

    private static DockerReply Ok<T>(T value, JsonTypeInfo<T> type) => new(200, JsonSerializer.SerializeToUtf8Bytes(value, type));

    private static DockerReply Error(int status, string message) => new(status, JsonSerializer.SerializeToUtf8Bytes(new ErrResponse(message), DockerJson.Default.ErrResponse));

    private static DockerReply NoError() => Ok(new ErrResponse(""), DockerJson.Default.ErrResponse);

    /// <summary>Runs <paramref name="action"/> under <paramref name="volume"/>'s lock.</summary>
    private async Task<T> UnderVolumeLockAsync<T>(string volume, Func<Task<T>> action, CancellationToken cancellationToken)
    {
        var gate = _volumeLocks.GetOrAdd(volume, static _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await action().ConfigureAwait(false);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>A request body that is not the call's JSON (answered with 400).</summary>
    private sealed class BadRequestException(string message) : Exception(message);
}
