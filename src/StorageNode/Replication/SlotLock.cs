namespace Slab.Replication;

/// <summary>A request slot that can wait for a <see cref="SlotLock{TWaiter}"/> with its own reusable value-task source.</summary>
internal interface ISlotLockWaiter
{
    /// <summary>Arms the slot's lock wait; called under the lock's internal lock.</summary>
    ValueTask PrepareLockWait();

    /// <summary>Completes the armed wait: the slot now holds the lock.</summary>
    void GrantLock();
}

/// <summary>
/// An allocation-free async mutex whose waiters are pre-allocated request slots: it serialises frames
/// onto one connection's <c>PipeWriter</c> (responses on the server, requests on the client).
/// </summary>
/// <remarks>
/// The same idea as the NBD frontend's reply lock, written generically so both sides of this protocol
/// share it. Waiters queue FIFO in a queue pre-sized to the slot count (waiting never allocates); each
/// slot waits for at most one thing at a time. <see cref="Exit"/> hands the lock straight to the next
/// waiter (no barging), whose continuation must run asynchronously (the slot's source is configured so).
/// </remarks>
internal sealed class SlotLock<TWaiter>(int maxWaiters)
    where TWaiter : class, ISlotLockWaiter
{
    private readonly Queue<TWaiter> _waiters = new(maxWaiters);
    private readonly Lock _lock = new();
    private bool _held;

    public ValueTask EnterAsync(TWaiter waiter)
    {
        lock (_lock)
        {
            if (!_held)
            {
                _held = true;
                return ValueTask.CompletedTask;
            }

            _waiters.Enqueue(waiter);
            return waiter.PrepareLockWait();
        }
    }

    public void Exit()
    {
        TWaiter? next;
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
