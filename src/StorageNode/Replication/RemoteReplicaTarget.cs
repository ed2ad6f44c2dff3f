using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Replication;

/// <summary>
/// The replica of one volume on one remote node, as a block target: every call is a request of the
/// replica protocol carrying the volume id and <see cref="Epoch"/>.
/// </summary>
/// <remarks>
/// <para>Connections: up to <see cref="ReplicationOptions.ConnectionsPerTarget"/>, used round-robin,
/// opened lazily and re-opened after a failure (RemoteReplicaTarget.Connections.cs). After a failed
/// connect, further attempts wait an exponential backoff measured on the injected
/// <see cref="TimeProvider"/>; requests during the backoff fail at once with
/// <see cref="BlockError.IOError"/>, so a controller never stalls on a dead replica.</para>
/// <para>Errors (all <see cref="BlockTargetException"/> naming the node): transport failure, timeout or
/// refused hello → <see cref="BlockError.IOError"/>; the replica holds a newer epoch →
/// <see cref="BlockError.Fenced"/>; the replica did not accept a newer epoch →
/// <see cref="BlockError.IOError"/>; no replica of the volume on the node → <see cref="BlockError.Closed"/>;
/// the target's own errors come back as they were raised on the remote node.</para>
/// <para>Threading: every member is safe to call concurrently (the <see cref="IBlockTarget"/> contract);
/// <see cref="Epoch"/> may be changed while requests run (each request carries the value read when it
/// was sent). Steady-state requests allocate nothing.</para>
/// </remarks>
public sealed partial class RemoteReplicaTarget : IBlockTarget, IAsyncDisposable
{
    private const BlockTargetFeatures RemoteFeatures = BlockTargetFeatures.Flush | BlockTargetFeatures.ForceUnitAccess
        | BlockTargetFeatures.Trim | BlockTargetFeatures.WriteZeroes | BlockTargetFeatures.BlockStatus | BlockTargetFeatures.MultiConnection;

    private readonly ReplicationOptions _options;
    private long _size;
    private long _epoch;

    /// <param name="volumeId">The volume whose replica this is.</param>
    /// <param name="size">The volume's size in bytes as the control plane knows it (see <see cref="Size"/>).</param>
    /// <param name="epoch">The controller's current epoch for the volume.</param>
    /// <param name="connector">Reaches the replica's node.</param>
    /// <param name="options">Limits and timeouts (validated here).</param>
    /// <param name="localNodeId">This node's id, sent in the hello.</param>
    /// <param name="timeProvider">Clock for request timeouts and reconnect backoff.</param>
    /// <param name="logger">Destination of connection logs.</param>
    public RemoteReplicaTarget(
        Guid volumeId,
        long size,
        long epoch,
        IReplicaConnector connector,
        ReplicationOptions options,
        Guid localNodeId,
        TimeProvider timeProvider,
        ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        ArgumentNullException.ThrowIfNull(connector);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        ArgumentNullException.ThrowIfNull(logger);
        options.Validate();
        VolumeId = volumeId;
        _size = size;
        _epoch = epoch;
        _connector = connector;
        _options = options;
        _localNodeId = localNodeId;
        _timeProvider = timeProvider;
        _logger = logger;
        _channels = new Channel[options.ConnectionsPerTarget];
        for (var i = 0; i < _channels.Length; i++)
        {
            _channels[i] = new Channel(this);
        }

        Geometry = new BlockGeometry(1, 4096, options.MaxPayload);
    }

    public Guid VolumeId { get; }

    /// <summary>Names the remote node in errors.</summary>
    public string RemoteName => _connector.RemoteName;

    /// <summary>
    /// The epoch every request carries from now on. The controller sets it when the volume's epoch
    /// changes (after the control plane committed it). Non-negative.
    /// </summary>
    public long Epoch
    {
        get => Volatile.Read(ref _epoch);
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            Volatile.Write(ref _epoch, value);
        }
    }

    /// <summary>
    /// Size in bytes: the value given at construction, updated by <see cref="SetSize"/> (the
    /// controller after a grow) and by <see cref="PingAsync"/> (the replica's own size). The remote
    /// replica checks ranges against its real size whatever this says.
    /// </summary>
    public long Size => Volatile.Read(ref _size);

    public BlockTargetFeatures Features => RemoteFeatures;

    /// <summary>Any alignment; 4 KiB preferred; at most <see cref="ReplicationOptions.MaxPayload"/> per Read/Write.</summary>
    public BlockGeometry Geometry { get; }

    public void SetSize(long size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        Volatile.Write(ref _size, size);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        CheckPayload(offset, destination.Length);
        if (destination.IsEmpty)
        {
            return;
        }

        await SendAsync(new ReplicaRequest(ReplicaOpcode.Read, ReplicaRequestFlags.None, VolumeId, Epoch, offset, (uint)destination.Length, Destination: destination), cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        CheckPayload(offset, source.Length);
        var wireFlags = (flags & BlockWriteFlags.ForceUnitAccess) != 0 ? ReplicaRequestFlags.ForceUnitAccess : ReplicaRequestFlags.None;
        await SendAsync(new ReplicaRequest(ReplicaOpcode.Write, wireFlags, VolumeId, Epoch, offset, (uint)source.Length, Payload: source), cancellationToken);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask FlushAsync(CancellationToken cancellationToken)
        => await SendAsync(new ReplicaRequest(ReplicaOpcode.Flush, ReplicaRequestFlags.None, VolumeId, Epoch, 0, 0), cancellationToken);

    /// <summary>Trims the range; ranges over 4 GiB − 4 KiB go as several requests, in order.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        do
        {
            var part = (uint)Math.Min(length, ReplicaProtocol.MaxRangeLength);
            await SendAsync(new ReplicaRequest(ReplicaOpcode.Trim, ReplicaRequestFlags.None, VolumeId, Epoch, offset, part), cancellationToken);
            offset += part;
            length -= part;
        }
        while (length > 0);
    }

    /// <summary>Zeroes the range; ranges over 4 GiB − 4 KiB go as several requests, in order.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        var wireFlags = ((flags & WriteZeroesFlags.ForceUnitAccess) != 0 ? ReplicaRequestFlags.ForceUnitAccess : ReplicaRequestFlags.None)
            | ((flags & WriteZeroesFlags.NoHole) != 0 ? ReplicaRequestFlags.NoHole : ReplicaRequestFlags.None);
        do
        {
            var part = (uint)Math.Min(length, ReplicaProtocol.MaxRangeLength);
            await SendAsync(new ReplicaRequest(ReplicaOpcode.WriteZeroes, wireFlags, VolumeId, Epoch, offset, part), cancellationToken);
            offset += part;
            length -= part;
        }
        while (length > 0);
    }

    /// <summary>
    /// One request: at most 4 GiB − 4 KiB of the range and at most 1024 extents (fewer when
    /// <paramref name="destination"/> is shorter), as the contract allows.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        if (length == 0 || destination.IsEmpty)
        {
            return 0;
        }

        var part = (uint)Math.Min(length, ReplicaProtocol.MaxRangeLength);
        var response = await SendAsync(new ReplicaRequest(ReplicaOpcode.Extents, ReplicaRequestFlags.None, VolumeId, Epoch, offset, part, Extents: destination), cancellationToken);
        return response.Count;
    }

    /// <summary>
    /// Asks the node about this volume's replica: its size (which also updates <see cref="Size"/>)
    /// and current epoch. Not fenced: it touches no data.
    /// </summary>
    public async Task<(long Size, long Epoch)> PingAsync(CancellationToken cancellationToken)
    {
        var response = await SendAsync(new ReplicaRequest(ReplicaOpcode.Ping, ReplicaRequestFlags.None, VolumeId, Epoch, 0, 0), cancellationToken);
        SetSize(response.Size);
        return (response.Size, response.Epoch);
    }

    /// <summary>Sends a request on the next connection; throws for any failed status.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReplicaResponse> SendAsync(ReplicaRequest request, CancellationToken cancellationToken)
    {
        var connection = await GetConnectionAsync(cancellationToken);
        if (request.Opcode is ReplicaOpcode.Read or ReplicaOpcode.Write && request.Length > (uint)connection.MaxPayload)
        {
            throw new BlockTargetException(BlockError.InvalidArgument, $"{request.Opcode} of {request.Length} bytes exceeds the {connection.MaxPayload}-byte maximum of replica node {RemoteName}");
        }

        var response = await connection.SendAsync(request, cancellationToken);
        if (response.Status != ReplicaStatus.Ok)
        {
            throw Failure(request, response);
        }

        return response;
    }

    private BlockTargetException Failure(in ReplicaRequest request, in ReplicaResponse response)
    {
        var detail = response.Message is null ? string.Empty : $": {response.Message}";
        var message = response.Status switch
        {
            ReplicaStatus.StaleEpoch => $"volume {VolumeId}: replica on node {RemoteName} fenced epoch {request.Epoch}; another controller owns the volume{detail}",
            ReplicaStatus.EpochRejected => $"volume {VolumeId}: replica on node {RemoteName} has not accepted epoch {request.Epoch}{detail}",
            ReplicaStatus.UnknownVolume => $"volume {VolumeId}: node {RemoteName} holds no replica of it",
            _ => $"volume {VolumeId}: {request.Opcode} at {request.Offset} (+{request.Length}) on replica node {RemoteName} failed with {response.Status}{detail}",
        };
        return new BlockTargetException(ReplicaProtocol.ToBlockError(response.Status), message);
    }

    private void CheckPayload(long offset, int length)
    {
        CheckRange(offset, length);
        if (length > _options.MaxPayload)
        {
            throw new BlockTargetException(BlockError.InvalidArgument, $"{length} bytes exceed the {_options.MaxPayload}-byte maximum request of replica node {RemoteName}");
        }
    }

    private static void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0)
        {
            throw new BlockTargetException(BlockError.OutOfRange, $"request [{offset}, +{length}) has a negative offset or length");
        }
    }
}
