using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Slab.Buffers;

namespace Slab.Common;

/// <summary>
/// The server-side life cycle shared by the NBD session's and the replica server's request slots:
/// a pre-allocated request that runs on the thread pool, holds an aligned payload buffer, waits for
/// the connection's <see cref="SlotLock{TWaiter}"/> without allocating, and returns itself to its
/// <see cref="BoundedSlotPool{TSlot}"/> once its work is done.
/// </summary>
/// <remarks>
/// Ownership moves in a cycle: the connection's reader loop takes the slot from the pool, fills it
/// and queues it (<see cref="IThreadPoolWorkItem"/>); a pool thread runs <see cref="ProcessAsync"/>;
/// when that <see cref="ValueTask"/> has been consumed (returning its pooled box) the buffer and the
/// slot go back, so a reused slot never observes a stale task. Only the current owner touches the
/// fields. A slot waits for at most one thing at a time.
/// </remarks>
internal abstract class PooledRequestSlot<TSelf> : IThreadPoolWorkItem, IValueTaskSource, ISlotLockWaiter
    where TSelf : PooledRequestSlot<TSelf>
{
    private readonly BoundedSlotPool<TSelf> _pool;
    private readonly Action _onProcessCompleted;
    private ManualResetValueTaskSourceCore<bool> _lockWait;
    private ValueTaskAwaiter _processing;

    protected PooledRequestSlot(BoundedSlotPool<TSelf> pool)
    {
        _pool = pool;
        _onProcessCompleted = OnProcessCompleted;
        // A released waiter runs on the pool, never inline inside the releasing slot's write path.
        _lockWait.RunContinuationsAsynchronously = true;
    }

    /// <summary>A write's payload (filled by the reader) or a read's data (filled by the target).</summary>
    public AlignedBuffer? Buffer { get; set; }

    /// <summary>Returns the payload buffer to its pool (idempotent).</summary>
    public void ReturnBuffer()
    {
        var buffer = Buffer;
        Buffer = null;
        buffer?.Return();
    }

    /// <summary>Runs the request on a pool thread.</summary>
    public void Execute() => Track(ProcessAsync());

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

    /// <summary>Takes <paramref name="writeLock"/>, waiting without allocation when another slot holds it.</summary>
    public ValueTask EnterAsync(SlotLock<TSelf> writeLock)
        => writeLock.Enter((TSelf)this) ? ValueTask.CompletedTask : new ValueTask(this, _lockWait.Version);

    void ISlotLockWaiter.OnQueued() => _lockWait.Reset();

    void ISlotLockWaiter.GrantLock() => _lockWait.SetResult(true);

    void IValueTaskSource.GetResult(short token) => _lockWait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _lockWait.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _lockWait.OnCompleted(continuation, state, token, flags);

    /// <summary>Processes the request and writes its reply; must not throw for request failures.</summary>
    protected abstract ValueTask ProcessAsync();

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
            _pool.Return((TSelf)this);
        }
    }
}
