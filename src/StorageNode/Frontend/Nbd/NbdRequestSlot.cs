using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Slab.Block;
using Slab.Buffers;

using Slab.Common;

namespace Slab.Frontend.Nbd;

/// <summary>
/// One pre-allocated request of a session: the parsed header, its payload buffer, and the machinery
/// to run it on the thread pool without allocating.
/// </summary>
/// <remarks>
/// Ownership moves in a cycle: the session's reader loop takes the slot from <see cref="BoundedSlotPool{TSlot}"/>,
/// fills it and queues it (<see cref="IThreadPoolWorkItem"/>); a pool thread runs the request and
/// writes its reply; when the request's <see cref="ValueTask"/> has been consumed the slot goes back
/// to the pool. Only the current owner touches the fields, so they need no locking. The slot also is
/// the waiter of <see cref="NbdReplyLock"/> (a slot waits for at most one thing at a time).
/// </remarks>
internal sealed class NbdRequestSlot : IThreadPoolWorkItem, IValueTaskSource
{
    /// <summary>Extents asked of the target per block-status request (bounds the reply to 8 KiB).</summary>
    public const int MaxExtentsPerReply = 1024;

    private readonly NbdSession _session;
    private readonly BoundedSlotPool<NbdRequestSlot> _pool;
    private readonly Action _onProcessCompleted;
    private ManualResetValueTaskSourceCore<bool> _lockWait;
    private ValueTaskAwaiter _processing;
    private BlockExtent[]? _extents;

    public NbdRequestSlot(NbdSession session, BoundedSlotPool<NbdRequestSlot> pool)
    {
        _session = session;
        _pool = pool;
        _onProcessCompleted = OnProcessCompleted;
        // A released waiter runs on the pool, never inline inside the releasing slot's reply path.
        _lockWait.RunContinuationsAsynchronously = true;
    }

    public NbdCommand Command { get; set; }

    public NbdCommandFlags Flags { get; set; }

    public ulong Cookie { get; set; }

    /// <summary>Byte offset as sent (unsigned; validated against the export size before use).</summary>
    public ulong Offset { get; set; }

    /// <summary>Length in bytes as sent.</summary>
    public uint Length { get; set; }

    /// <summary>Payload of a WRITE (filled by the reader) or data of a READ (filled by the target).</summary>
    public AlignedBuffer? Buffer { get; set; }

    /// <summary>Extents of a block-status reply; <see cref="ExtentCount"/> of them are valid.</summary>
    public BlockExtent[] Extents => _extents ??= new BlockExtent[MaxExtentsPerReply];

    public int ExtentCount { get; set; }

    /// <summary>Returns the payload buffer to its pool (idempotent).</summary>
    public void ReturnBuffer()
    {
        var buffer = Buffer;
        Buffer = null;
        buffer?.Return();
    }

    /// <summary>Runs the request on a pool thread.</summary>
    public void Execute() => Track(_session.ProcessRequestAsync(this));

    /// <summary>
    /// Consumes the request's ValueTask exactly once (returning its pooled box) before the slot goes
    /// back to the pool, so a reused slot can never observe a stale task.
    /// </summary>
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
            // Consuming the ValueTask returns its pooled state machine box.
            processing.GetResult();
        }
        finally
        {
            ReturnBuffer();
            _pool.Return(this);
        }
    }

    /// <summary>Arms the reply-lock wait; called by <see cref="NbdReplyLock"/> under its lock.</summary>
    internal ValueTask PrepareLockWait()
    {
        _lockWait.Reset();
        return new ValueTask(this, _lockWait.Version);
    }

    /// <summary>Hands the reply lock to this slot (wakes its waiting reply).</summary>
    internal void GrantLock() => _lockWait.SetResult(true);

    void IValueTaskSource.GetResult(short token) => _lockWait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _lockWait.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _lockWait.OnCompleted(continuation, state, token, flags);
}

/// <summary>
/// An allocation-free async mutex serialising replies onto the connection's <c>PipeWriter</c>.
/// </summary>
/// <remarks>
/// Waiters are request slots (each waits with its own reusable source), queued FIFO in a queue
/// pre-sized to the slot count, so waiting never allocates. <see cref="Exit"/> hands the lock to the
/// next waiter directly (no barging).
/// </remarks>
internal sealed class NbdReplyLock(int maxWaiters)
{
    private readonly Queue<NbdRequestSlot> _waiters = new(maxWaiters);
    private readonly Lock _lock = new();
    private bool _held;

    public ValueTask EnterAsync(NbdRequestSlot slot)
    {
        lock (_lock)
        {
            if (!_held)
            {
                _held = true;
                return ValueTask.CompletedTask;
            }

            _waiters.Enqueue(slot);
            return slot.PrepareLockWait();
        }
    }

    public void Exit()
    {
        NbdRequestSlot? next;
        lock (_lock)
        {
            if (!_waiters.TryDequeue(out next))
            {
                _held = false;
                return;
            }
        }

        next.GrantLock();
    }
}
