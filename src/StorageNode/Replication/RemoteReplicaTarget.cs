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
public sealed partial class RemoteReplicaTarget : IReplicaTarget, IAsyncDisposable
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

    /// <summary>The replica's node grows the file itself (it follows the cluster state); this side only widens its bounds.</summary>
    public void Grow(long newSizeBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(newSizeBytes);
        Common.AtomicMax.Raise(ref _size, newSizeBytes);
    }

    /// <summary>Closes the connections in the background (the volume layer closes controllers synchronously).</summary>
    void IDisposable.Dispose() => _ = DisposeAsync().AsTask();

    // The hot methods are not async: with an open connection they return the request slot's own
    // value task, so a request allocates nothing; reconnecting takes the async path.

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (CheckPayload(offset, destination.Length) is { } invalid)
        {
            return ValueTask.FromException(invalid);
        }

        return destination.IsEmpty
            ? ValueTask.CompletedTask
            : SendAsync(new ReplicaRequest(ReplicaOpcode.Read, ReplicaRequestFlags.None, VolumeId, Epoch, offset, (uint)destination.Length, Destination: destination), cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        if (CheckPayload(offset, source.Length) is { } invalid)
        {
            return ValueTask.FromException(invalid);
        }

        var wireFlags = (flags & BlockWriteFlags.ForceUnitAccess) != 0 ? ReplicaRequestFlags.ForceUnitAccess : ReplicaRequestFlags.None;
        return SendAsync(new ReplicaRequest(ReplicaOpcode.Write, wireFlags, VolumeId, Epoch, offset, (uint)source.Length, Payload: source), cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
        => SendAsync(new ReplicaRequest(ReplicaOpcode.Flush, ReplicaRequestFlags.None, VolumeId, Epoch, 0, 0), cancellationToken);

    /// <summary>Trims the range; ranges over 4 GiB − 4 KiB go as several requests, in order.</summary>
    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
        => SendRangeAsync(ReplicaOpcode.Trim, ReplicaRequestFlags.None, offset, length, cancellationToken);

    /// <summary>Zeroes the range; ranges over 4 GiB − 4 KiB go as several requests, in order.</summary>
    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
    {
        var wireFlags = ((flags & WriteZeroesFlags.ForceUnitAccess) != 0 ? ReplicaRequestFlags.ForceUnitAccess : ReplicaRequestFlags.None)
            | ((flags & WriteZeroesFlags.NoHole) != 0 ? ReplicaRequestFlags.NoHole : ReplicaRequestFlags.None);
        return SendRangeAsync(ReplicaOpcode.WriteZeroes, wireFlags, offset, length, cancellationToken);
    }

    /// <summary>
    /// One request: at most 4 GiB − 4 KiB of the range and at most 1024 extents (fewer when
    /// <paramref name="destination"/> is shorter), as the contract allows.
    /// </summary>
    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        if (CheckRange(offset, length) is { } invalid)
        {
            return ValueTask.FromException<int>(invalid);
        }

        if (length == 0 || destination.IsEmpty)
        {
            return ValueTask.FromResult(0);
        }

        var request = new ReplicaRequest(
            ReplicaOpcode.Extents, ReplicaRequestFlags.None, VolumeId, Epoch, offset, (uint)Math.Min(length, ReplicaProtocol.MaxRangeLength), Extents: destination);
        if (TryGetOpenConnection(out var failure) is { } connection)
        {
            return connection.SendForCountAsync(request, cancellationToken);
        }

        return failure is null ? SlowExtentsAsync(request, cancellationToken) : ValueTask.FromException<int>(failure);
    }

    /// <summary>
    /// Asks the node about this volume's replica: its size (which also updates <see cref="Size"/>)
    /// and current epoch. Not fenced: it touches no data.
    /// </summary>
    public async Task<(long Size, long Epoch)> PingAsync(CancellationToken cancellationToken)
    {
        var request = new ReplicaRequest(ReplicaOpcode.Ping, ReplicaRequestFlags.None, VolumeId, Epoch, 0, 0);
        var connection = await GetConnectionAsync(cancellationToken);
        var response = await connection.SendForResponseAsync(request, cancellationToken);
        SetSize(response.Size);
        return (response.Size, response.Epoch);
    }

    private ValueTask SendAsync(in ReplicaRequest request, CancellationToken cancellationToken)
    {
        if (TryGetOpenConnection(out var failure) is { } connection)
        {
            return request.Length > (uint)connection.MaxPayload && request.Opcode is ReplicaOpcode.Read or ReplicaOpcode.Write
                ? ValueTask.FromException(TooLarge(request, connection))
                : connection.SendAsync(request, cancellationToken);
        }

        return failure is null ? SlowSendAsync(request, cancellationToken) : ValueTask.FromException(failure);
    }

    /// <summary>Waits for a connection (reconnecting), then sends.</summary>
    private async ValueTask SlowSendAsync(ReplicaRequest request, CancellationToken cancellationToken)
    {
        var connection = await GetConnectionAsync(cancellationToken);
        if (request.Length > (uint)connection.MaxPayload && request.Opcode is ReplicaOpcode.Read or ReplicaOpcode.Write)
        {
            throw TooLarge(request, connection);
        }

        await connection.SendAsync(request, cancellationToken);
    }

    private async ValueTask<int> SlowExtentsAsync(ReplicaRequest request, CancellationToken cancellationToken)
    {
        var connection = await GetConnectionAsync(cancellationToken);
        return await connection.SendForCountAsync(request, cancellationToken);
    }

    private ValueTask SendRangeAsync(ReplicaOpcode opcode, ReplicaRequestFlags flags, long offset, long length, CancellationToken cancellationToken)
    {
        if (CheckRange(offset, length) is { } invalid)
        {
            return ValueTask.FromException(invalid);
        }

        return length <= ReplicaProtocol.MaxRangeLength
            ? SendAsync(new ReplicaRequest(opcode, flags, VolumeId, Epoch, offset, (uint)length), cancellationToken)
            : SendSplitAsync(opcode, flags, offset, length, cancellationToken);
    }

    private async ValueTask SendSplitAsync(ReplicaOpcode opcode, ReplicaRequestFlags flags, long offset, long length, CancellationToken cancellationToken)
    {
        while (length > 0)
        {
            var part = (uint)Math.Min(length, ReplicaProtocol.MaxRangeLength);
            await SendAsync(new ReplicaRequest(opcode, flags, VolumeId, Epoch, offset, part), cancellationToken);
            offset += part;
            length -= part;
        }
    }

    private BlockTargetException TooLarge(in ReplicaRequest request, ReplicaClientConnection connection)
        => new(BlockError.InvalidArgument, $"{request.Opcode} of {request.Length} bytes exceeds the {connection.MaxPayload}-byte maximum of replica node {RemoteName}");

    private BlockTargetException? CheckPayload(long offset, int length)
        => CheckRange(offset, length) ?? (length > _options.MaxPayload
            ? new BlockTargetException(BlockError.InvalidArgument, $"{length} bytes exceed the {_options.MaxPayload}-byte maximum request of replica node {RemoteName}")
            : null);

    private static BlockTargetException? CheckRange(long offset, long length)
        => offset < 0 || length < 0
            ? new BlockTargetException(BlockError.OutOfRange, $"request [{offset}, +{length}) has a negative offset or length")
            : null;
}
