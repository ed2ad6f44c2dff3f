using System.IO.Pipelines;
using Microsoft.Extensions.Logging;
using Slab.Block;

using Slab.Common;

namespace Slab.Replication;

/// <summary>
/// One client connection to a replica node: hello (ReplicaClientConnection.Hello.cs), then pipelined
/// requests answered out of order (ReplicaClientConnection.Requests.cs).
/// </summary>
/// <remarks>
/// <para>Threading: the Send methods may be called concurrently from any number of threads; at most
/// <see cref="ReplicationOptions.MaxInFlightPerConnection"/> requests are in flight, further callers
/// wait for a slot. Frames are written under an allocation-free send lock (a slot that has to wait
/// for it is granted it on the pool); one reader loop matches responses to slots by request id.</para>
/// <para>Failure: the first transport error, malformed response, or request timeout closes the
/// connection for good: every request in flight and every later one fails with
/// <see cref="BlockError.IOError"/> naming the node (<see cref="IsOpen"/> turns false; the owner
/// reconnects with a new connection), and so does every caller still waiting for a slot. A failed status
/// fails only its request, with the mapped block error.</para>
/// <para>Steady state allocates nothing per request: slots (which are the awaited value-task sources),
/// their timers and buffers are created with the connection. A caller waiting for a free slot
/// (window full) allocates its wait.</para>
/// </remarks>
internal sealed partial class ReplicaClientConnection : IAsyncDisposable
{
    private readonly IReplicaTransport _transport;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly ReplicationOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly ReplicaClientSlot[] _slots;
    private readonly int[] _freeSlots;
    private readonly Lock _freeLock = new();
    private readonly SemaphoreSlim _window;
    private readonly SlotLock<ReplicaClientSlot> _sendLock;
    private readonly CancellationTokenSource _closing = new();
    private readonly byte[] _scratch = new byte[ReplicaProtocol.MaxExtentsPerResponse * ReplicaProtocol.ExtentSize];
    private int _freeCount;
    private Task _reader = Task.CompletedTask;
    private string? _closeReason;
    private int _closed;

    private ReplicaClientConnection(IReplicaTransport transport, string remoteName, ReplicationOptions options, TimeProvider timeProvider, ILogger logger)
    {
        _transport = transport;
        _input = transport.Input;
        _output = transport.Output;
        RemoteName = remoteName;
        _options = options;
        _timeProvider = timeProvider;
        _logger = logger;
        var count = options.MaxInFlightPerConnection;
        _slots = new ReplicaClientSlot[count];
        _freeSlots = new int[count];
        for (var i = 0; i < count; i++)
        {
            _slots[i] = new ReplicaClientSlot(this, i, timeProvider);
            _freeSlots[i] = count - 1 - i;
        }

        _freeCount = count;
        _window = new SemaphoreSlim(count, count);
        _sendLock = new SlotLock<ReplicaClientSlot>(count);
        MaxPayload = options.MaxPayload;
    }

    /// <summary>Names the node in errors and logs.</summary>
    public string RemoteName { get; }

    /// <summary>Negotiated protocol version.</summary>
    public ushort Version { get; private set; }

    /// <summary>The server's node id from its hello.</summary>
    public Guid PeerNodeId { get; private set; }

    /// <summary>Largest Read/Write length on this connection: the smaller of both sides' maxima.</summary>
    public int MaxPayload { get; private set; }

    /// <summary>False once the connection is closed (by error, timeout or disposal); never true again.</summary>
    public bool IsOpen => Volatile.Read(ref _closed) == 0;

    /// <summary>Requests currently holding a slot (tests).</summary>
    internal int InFlight
    {
        get
        {
            lock (_freeLock)
            {
                return _slots.Length - _freeCount;
            }
        }
    }

    /// <summary>
    /// Connects through <paramref name="connector"/> and runs the hello, all within
    /// <see cref="ReplicationOptions.RequestTimeout"/>. Throws <see cref="BlockTargetException"/>
    /// (<see cref="BlockError.IOError"/>, naming the node and the reason: unreachable, refused with the
    /// server's reason, malformed hello, timeout), or <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> fired.
    /// </summary>
    public static async Task<ReplicaClientConnection> ConnectAsync(
        IReplicaConnector connector,
        ReplicationOptions options,
        Guid localNodeId,
        TimeProvider timeProvider,
        ILogger logger,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connector);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        using var timeout = new CancellationTokenSource(options.RequestTimeout, timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        IReplicaTransport transport;
        try
        {
            transport = await connector.ConnectAsync(linked.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new BlockTargetException(BlockError.IOError, $"replica node {connector.RemoteName}: connect timed out after {options.RequestTimeout}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not BlockTargetException)
        {
            throw new BlockTargetException(BlockError.IOError, $"replica node {connector.RemoteName}: connect failed: {ex.Message}", ex);
        }

        var connection = new ReplicaClientConnection(transport, connector.RemoteName, options, timeProvider, logger);
        try
        {
            await connection.HelloAsync(localNodeId, linked.Token);
        }
        catch (Exception ex)
        {
            connection.Close("hello failed");
            await connection.DisposeAsync();
            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                throw new BlockTargetException(BlockError.IOError, $"replica node {connector.RemoteName}: hello timed out after {options.RequestTimeout}");
            }

            if (ex is OperationCanceledException or BlockTargetException)
            {
                throw;
            }

            throw new BlockTargetException(BlockError.IOError, $"replica node {connector.RemoteName}: hello failed: {ex.Message}", ex);
        }

        connection._reader = connection.ReadResponsesAsync();
        ReplicaLog.ClientConnected(logger, connector.RemoteName, connection.Version, connection.PeerNodeId);
        return connection;
    }

    /// <summary>
    /// Closes the connection (idempotent, any thread): aborts the transport and fails every request
    /// in flight with <see cref="BlockError.IOError"/> carrying <paramref name="reason"/>.
    /// </summary>
    public void Close(string reason)
    {
        if (Interlocked.CompareExchange(ref _closeReason, reason, null) is not null)
        {
            return;
        }

        Interlocked.Exchange(ref _closed, 1);
        _transport.Abort();
        foreach (var slot in _slots)
        {
            FailIfClosed(slot);
        }

        // Callers waiting for a free slot fail too.
        _closing.Cancel();
    }

    /// <summary>Fails the slot's pending request when the connection is closed.</summary>
    internal void FailIfClosed(ReplicaClientSlot slot)
    {
        if (Volatile.Read(ref _closed) != 0 && slot.TryClaimPending())
        {
            slot.Fail(ClosedException());
        }
    }

    private BlockTargetException ClosedException()
        => new(BlockError.IOError, $"replica node {RemoteName}: connection closed ({Volatile.Read(ref _closeReason) ?? "unknown reason"})");

    /// <summary>A slot's timer fired: a request pending longer than the timeout closes the connection.</summary>
    internal void OnSlotTimer(ReplicaClientSlot slot)
    {
        if (slot.State is not (ReplicaClientSlot.Pending or ReplicaClientSlot.Sending) || _timeProvider.GetElapsedTime(slot.ArmedAt) < _options.RequestTimeout)
        {
            return;
        }

        if (Volatile.Read(ref _closed) == 0)
        {
            ReplicaLog.ClientRequestTimedOut(_logger, RemoteName, _options.RequestTimeout);
        }

        Close($"{slot.Request.Opcode} request timed out after {_options.RequestTimeout}");
    }

    /// <summary>Closes the connection, waits for its reader loop and releases the transport.</summary>
    public async ValueTask DisposeAsync()
    {
        Close("closed by this node");
        try
        {
            await _reader;
        }
        catch (Exception)
        {
            // The reader loop records its failure as the close reason; nothing is left to report.
        }

        foreach (var slot in _slots)
        {
            slot.DisposeTimer();
        }

        // _closing is not disposed: it owns no timer, and a caller racing the close may still read its token.

        await _transport.DisposeAsync();
    }
}
