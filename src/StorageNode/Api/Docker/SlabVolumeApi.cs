using System.Net.Sockets;
using Grpc.Core;
using Grpc.Net.Client;
using Slab.Common;
using V1 = Slab.Api.V1;

namespace Slab.Api.Docker;

/// <summary>
/// The part of slabd's public API the Docker plugin uses. The plugin is a client of that API, like
/// slabctl: in cluster mode the answering services record attaches in Raft (exclusive, takeover
/// from a dead holder) and refuse what the cluster refuses, so the plugin has no second copy of
/// those rules. Failures are <see cref="SlabException"/>s whose code comes from the gRPC status.
/// </summary>
public interface ISlabVolumeApi
{
    /// <summary>The volume, or null when there is none by that name.</summary>
    Task<V1.Volume?> FindAsync(string name, CancellationToken cancellationToken);

    Task<IReadOnlyList<V1.Volume>> ListAsync(CancellationToken cancellationToken);

    Task<V1.Volume> CreateAsync(string name, V1.VolumeSpec spec, CancellationToken cancellationToken);

    /// <summary>A clone of <paramref name="source"/> (a volume or <c>VOL@SNAP</c>) named <paramref name="name"/>.</summary>
    Task<V1.Volume> CloneAsync(string source, string name, IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken);

    Task DeleteAsync(string name, CancellationToken cancellationToken);

    /// <summary>Attaches on this node (formatting on first use) and mounts at <paramref name="path"/>; idempotent for the same path.</summary>
    Task MountAsync(string name, string path, CancellationToken cancellationToken);

    Task UnmountAsync(string name, string path, CancellationToken cancellationToken);

    Task DetachAsync(string name, CancellationToken cancellationToken);
}

/// <summary>
/// <see cref="ISlabVolumeApi"/> over slabd's own gRPC unix socket (RUN/api.sock). Deadlines stay
/// under Docker's own timeouts for plugin calls (1 minute for Get/List/Path, 2 for Create, Remove,
/// Mount and Unmount), so Docker hears our answer rather than its own timeout.
/// </summary>
public sealed class GrpcSlabVolumeApi : ISlabVolumeApi, IDisposable
{
    private static readonly TimeSpan ShortDeadline = TimeSpan.FromSeconds(50);
    private static readonly TimeSpan LongDeadline = TimeSpan.FromSeconds(110);

    private readonly GrpcChannel _channel;
    private readonly V1.Volumes.VolumesClient _volumes;
    private readonly V1.MountAttach.MountAttachClient _mounts;

    public GrpcSlabVolumeApi(string apiSocketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(10),
            UseProxy = false,
            ConnectCallback = (_, token) => ConnectUnixAsync(apiSocketPath, token),
        };
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
        _volumes = new V1.Volumes.VolumesClient(_channel);
        _mounts = new V1.MountAttach.MountAttachClient(_channel);
    }

    public async Task<V1.Volume?> FindAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            return await CallAsync(() => _volumes.InspectAsync(new V1.InspectVolumeRequest { Volume = name }, Options(ShortDeadline, cancellationToken)).ResponseAsync).ConfigureAwait(false);
        }
        catch (SlabException e) when (e.Code == SlabErrorCode.NotFound)
        {
            return null;
        }
    }

    public async Task<IReadOnlyList<V1.Volume>> ListAsync(CancellationToken cancellationToken)
        => (await CallAsync(() => _volumes.EnumerateAsync(new V1.EnumerateVolumesRequest(), Options(ShortDeadline, cancellationToken)).ResponseAsync).ConfigureAwait(false)).Volumes;

    public Task<V1.Volume> CreateAsync(string name, V1.VolumeSpec spec, CancellationToken cancellationToken)
        => CallAsync(() => _volumes.CreateAsync(new V1.CreateVolumeRequest { Name = name, Spec = spec }, Options(LongDeadline, cancellationToken)).ResponseAsync);

    public Task<V1.Volume> CloneAsync(string source, string name, IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken)
    {
        var request = new V1.CloneVolumeRequest { Source = source, Name = name };
        foreach (var (key, value) in labels)
        {
            request.Labels[key] = value;
        }

        return CallAsync(() => _volumes.CloneAsync(request, Options(LongDeadline, cancellationToken)).ResponseAsync);
    }

    public Task DeleteAsync(string name, CancellationToken cancellationToken)
        => CallAsync(() => _volumes.DeleteAsync(new V1.DeleteVolumeRequest { Volume = name }, Options(LongDeadline, cancellationToken)).ResponseAsync);

    public Task MountAsync(string name, string path, CancellationToken cancellationToken)
        => CallAsync(() => _mounts.MountAsync(new V1.MountRequest { Volume = name, Path = path }, Options(LongDeadline, cancellationToken)).ResponseAsync);

    public Task UnmountAsync(string name, string path, CancellationToken cancellationToken)
        => CallAsync(() => _mounts.UnmountAsync(new V1.UnmountRequest { Volume = name, Path = path }, Options(LongDeadline, cancellationToken)).ResponseAsync);

    public Task DetachAsync(string name, CancellationToken cancellationToken)
        => CallAsync(() => _mounts.DetachAsync(new V1.DetachRequest { Volume = name }, Options(LongDeadline, cancellationToken)).ResponseAsync);

    public void Dispose() => _channel.Dispose();

    private static CallOptions Options(TimeSpan deadline, CancellationToken cancellationToken)
        => new(deadline: DateTime.UtcNow + deadline, cancellationToken: cancellationToken);

    /// <summary>Runs a call; a failed one becomes a <see cref="SlabException"/> typed by its status code.</summary>
    private static async Task<T> CallAsync<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new SlabException(ToCode(e.StatusCode), e.StatusCode == StatusCode.DeadlineExceeded ? "slabd did not answer in time: " + e.Status.Detail : e.Status.Detail, e);
        }
    }

    private static SlabErrorCode ToCode(StatusCode status) => status switch
    {
        StatusCode.InvalidArgument or StatusCode.OutOfRange => SlabErrorCode.InvalidArgument,
        StatusCode.NotFound => SlabErrorCode.NotFound,
        StatusCode.AlreadyExists => SlabErrorCode.AlreadyExists,
        StatusCode.FailedPrecondition or StatusCode.Aborted => SlabErrorCode.FailedPrecondition,
        StatusCode.ResourceExhausted => SlabErrorCode.ResourceExhausted,
        StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Cancelled => SlabErrorCode.Unavailable,
        _ => SlabErrorCode.Internal,
    };

    private static async ValueTask<Stream> ConnectUnixAsync(string path, CancellationToken token)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), token).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
