namespace Slab.Common;

/// <summary>A request slot that can wait for a <see cref="SlotLock{TWaiter}"/> without allocating.</summary>
internal interface ISlotLockWaiter
{
    /// <summary>The slot was queued (called under the lock's internal lock, before <see cref="GrantLock"/> can run).</summary>
    void OnQueued();

    /// <summary>The slot now holds the lock. Called on the thread that released it: must not run the slot's work inline.</summary>
    void GrantLock();
}

/// <summary>
/// An allocation-free async mutex whose waiters are pre-allocated request slots: it serialises frames
/// onto one connection's <c>PipeWriter</c>.
/// </summary>
/// <remarks>
/// Used by the NBD session (replies) and both sides of the replica protocol. Waiters queue FIFO in a queue pre-sized to the slot count (waiting never allocates); each
/// slot waits for at most one thing at a time. <see cref="Exit"/> hands the lock straight to the next
/// waiter (no barging); the waiter continues elsewhere (on the pool).
/// </remarks>
internal sealed class SlotLock<TWaiter>(int maxWaiters)
    where TWaiter : class, ISlotLockWaiter
{
    private readonly Queue<TWaiter> _waiters = new(maxWaiters);
    private readonly Lock _lock = new();
    private bool _held;

    /// <summary>True when the lock was free and is now held; otherwise the waiter is queued and granted it later.</summary>
    public bool Enter(TWaiter waiter)
    {
        lock (_lock)
        {
            if (!_held)
            {
                _held = true;
                return true;
            }

            waiter.OnQueued();
            _waiters.Enqueue(waiter);
            return false;
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
