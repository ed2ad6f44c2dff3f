using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Slab.Block;
using Slab.Buffers;

using Slab.Common;

namespace Slab.Replication;

/// <summary>
/// One pre-allocated request of a server connection: the parsed header, its payload or read buffer,
/// and the machinery to run it on the thread pool without allocating.
/// </summary>
/// <remarks>
/// Ownership cycles: the reader loop takes the slot from <see cref="BoundedSlotPool{TSlot}"/>, fills it and
/// queues it; a pool thread runs it and writes the response; once the processing ValueTask has been
/// consumed the slot returns to the pool. Only the current owner touches the fields. The slot is also
/// the waiter of the connection's response lock.
/// </remarks>
internal sealed class ReplicaServerSlot : IThreadPoolWorkItem, IValueTaskSource, ISlotLockWaiter
{
    private readonly ReplicaServerConnection _connection;
    private readonly BoundedSlotPool<ReplicaServerSlot> _pool;
    private readonly Action _onProcessCompleted;
    private ManualResetValueTaskSourceCore<bool> _lockWait;
    private ValueTaskAwaiter _processing;
    private BlockExtent[]? _extents;
    private byte[]? _scratch;

    public ReplicaServerSlot(ReplicaServerConnection connection, BoundedSlotPool<ReplicaServerSlot> pool)
    {
        _connection = connection;
        _pool = pool;
        _onProcessCompleted = OnProcessCompleted;
        _lockWait.RunContinuationsAsynchronously = true;
    }

    public RequestHeader Header { get; set; }

    /// <summary>A Write's payload (filled by the reader) or a Read's data (filled by the target).</summary>
    public AlignedBuffer? Buffer { get; set; }

    /// <summary>Extents asked of the target (at most <see cref="ReplicaProtocol.MaxExtentsPerResponse"/>).</summary>
    public BlockExtent[] Extents => _extents ??= new BlockExtent[ReplicaProtocol.MaxExtentsPerResponse];

    /// <summary>Encoded response data that is not a read buffer: extents, ping info, error messages.</summary>
    public byte[] Scratch => _scratch ??= new byte[ReplicaProtocol.MaxExtentsPerResponse * ReplicaProtocol.ExtentSize];

    public void ReturnBuffer()
    {
        var buffer = Buffer;
        Buffer = null;
        buffer?.Return();
    }

    public void Execute() => Track(_connection.ProcessAsync(this));

    private void Track(ValueTask processing)
    {
        _processing = processing.GetAwaiter();
        if (_processing.IsCompleted)
        {
            OnProcessCompleted();
        }
        else
        {
            _processing.UnsafeOnCompleted(_onProcessCompleted);
        }
    }

    private void OnProcessCompleted()
    {
        var processing = _processing;
        _processing = default;
        try
        {
            processing.GetResult();
        }
        finally
        {
            ReturnBuffer();
            _pool.Return(this);
        }
    }

    /// <summary>Takes the response lock, waiting without allocation when another slot holds it.</summary>
    public ValueTask EnterAsync(SlotLock<ReplicaServerSlot> responseLock)
        => responseLock.Enter(this) ? ValueTask.CompletedTask : new ValueTask(this, _lockWait.Version);

    public void OnQueued() => _lockWait.Reset();

    public void GrantLock() => _lockWait.SetResult(true);

    void IValueTaskSource.GetResult(short token) => _lockWait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _lockWait.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _lockWait.OnCompleted(continuation, state, token, flags);
}
