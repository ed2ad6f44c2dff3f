using Grpc.Core;
using Grpc.Net.Client;
using Slab.Api.V1;
using Slab.Cli.Connection;

namespace Slab.Csi.Slabd;

/// <summary>
/// slab-csi's one channel to slabd's public API and its clients. Thread-safe; the channel opens on
/// first use and reconnects by itself after slabd restarts.
/// </summary>
internal sealed class SlabdApi : IDisposable
{
    /// <summary>Calls that attach, format, mount or copy (stage, clone, snapshot) wait this long.</summary>
    public static readonly TimeSpan LongDeadline = TimeSpan.FromMinutes(5);

    /// <summary>Everything else.</summary>
    public static readonly TimeSpan DefaultDeadline = TimeSpan.FromSeconds(30);

    private readonly GrpcChannel _channel;

    public SlabdApi(Cli.Connection.Endpoint endpoint)
    {
        Endpoint = endpoint;
        _channel = ApiConnection.Open(endpoint);
        Identity = new Api.V1.Identity.IdentityClient(_channel);
        Volumes = new Volumes.VolumesClient(_channel);
        Snapshots = new Snapshots.SnapshotsClient(_channel);
        MountAttach = new MountAttach.MountAttachClient(_channel);
        Node = new Api.V1.Node.NodeClient(_channel);
        Cluster = new Api.V1.Cluster.ClusterClient(_channel);
    }

    public Cli.Connection.Endpoint Endpoint { get; }

    public Api.V1.Identity.IdentityClient Identity { get; }

    public Volumes.VolumesClient Volumes { get; }

    public Snapshots.SnapshotsClient Snapshots { get; }

    public MountAttach.MountAttachClient MountAttach { get; }

    public Api.V1.Node.NodeClient Node { get; }

    public Api.V1.Cluster.ClusterClient Cluster { get; }

    /// <summary>Call options: a deadline of <paramref name="timeout"/> (default <see cref="DefaultDeadline"/>), cancelled with the CO's call.</summary>
    public static CallOptions Options(ServerCallContext context, TimeSpan? timeout = null) =>
        new(deadline: DateTime.UtcNow + (timeout ?? DefaultDeadline), cancellationToken: context.CancellationToken);

    /// <summary>The volume by name or id, or null when slabd has none (NOT_FOUND).</summary>
    public async Task<Volume?> FindVolumeAsync(string nameOrId, ServerCallContext context)
    {
        try
        {
            return await Volumes.InspectAsync(new InspectVolumeRequest { Volume = nameOrId }, Options(context)).ConfigureAwait(false);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>
    /// The volume with exactly this id, or null. (slabd looks volumes up by name or id; a CSI id must
    /// not find a volume whose name happens to equal it.)
    /// </summary>
    public async Task<Volume?> FindVolumeByIdAsync(string volumeId, ServerCallContext context) =>
        await FindVolumeAsync(volumeId, context).ConfigureAwait(false) is { } volume && volume.Id == volumeId ? volume : null;

    /// <summary>The volume with exactly this id, or a CSI NOT_FOUND naming it.</summary>
    public async Task<Volume> RequireVolumeAsync(string volumeId, ServerCallContext context) =>
        await FindVolumeByIdAsync(volumeId, context).ConfigureAwait(false)
        ?? throw CsiException.NotFound($"volume {volumeId} does not exist");

    public void Dispose() => _channel.Dispose();
}
