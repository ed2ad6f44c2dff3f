namespace Slab.Block;

/// <summary>What <see cref="EpochGate.TryEnter"/> decided about one request.</summary>
public enum EpochAdmission
{
    /// <summary>The request's epoch is the replica's: it may run; the caller must call <see cref="EpochGate.Exit"/> when it is done.</summary>
    Admitted,

    /// <summary>The request's epoch is lower than the replica's (or than an epoch being raised to): refuse it, it comes from a fenced controller.</summary>
    Stale,

    /// <summary>
    /// The request's epoch is higher than the one the replica accepts now: the caller must confirm the
    /// epoch with the control plane, <see cref="EpochGate.RaiseAsync"/> to it, and try again.
    /// </summary>
    Ahead,
}

/// <summary>
/// The fencing gate of one replica: admits requests that carry the replica's epoch, refuses lower
/// ones, and raises the epoch atomically with respect to requests already admitted under the old one.
/// </summary>
/// <remarks>
/// <para>Contract of <see cref="RaiseAsync"/>: from the moment it is called, no request carrying an
/// older epoch is admitted; it returns only after every request admitted under an older epoch has
/// called <see cref="Exit"/> and the new epoch has been persisted; only then are requests carrying
/// the new epoch admitted. So a write of a fenced controller can never land after a write of its
/// successor.</para>
/// <para>Threading: <see cref="TryEnter"/> and <see cref="Exit"/> are lock-free and allocation-free
/// (three interlocked operations per request) and may run on any thread; raises are serialized.</para>
/// <para>Why the order is safe: a request increments the in-flight count and then reads the floor;
/// a raise writes the floor and then reads the in-flight count (all sequentially consistent). Either
/// the request sees the new floor (and is refused), or the raise sees the request in flight (and
/// waits for it). Any instant after the floor write at which nothing is in flight proves that every
/// old-epoch request has left.</para>
/// </remarks>
public sealed class EpochGate
{
    private readonly SemaphoreSlim _raiseLock = new(1, 1);
    private long _floor;
    private long _admitted;
    private int _inFlight;
    private TaskCompletionSource? _drained;

    /// <param name="epoch">The epoch the replica accepts now (persisted with the replica); at least 0.</param>
    public EpochGate(long epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        _floor = epoch;
        _admitted = epoch;
    }

    /// <summary>The epoch requests are admitted at now.</summary>
    public long Epoch => Volatile.Read(ref _admitted);

    /// <summary>Requests admitted and not yet exited.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>
    /// Decides one request. On <see cref="EpochAdmission.Admitted"/> the caller owns an admission
    /// and must call <see cref="Exit"/> exactly once; on the other answers it owns nothing.
    /// <paramref name="current"/> is the epoch the replica holds (for error messages).
    /// </summary>
    public EpochAdmission TryEnter(long epoch, out long current)
    {
        Interlocked.Increment(ref _inFlight);
        var floor = Interlocked.Read(ref _floor);
        var admitted = Volatile.Read(ref _admitted);
        current = floor;
        if (epoch == admitted && admitted == floor)
        {
            return EpochAdmission.Admitted;
        }

        Exit();
        return epoch < floor ? EpochAdmission.Stale : EpochAdmission.Ahead;
    }

    /// <summary>
    /// Enters at <paramref name="epoch"/>; when it is ahead of the gate, asks
    /// <paramref name="advance"/> once (which raises the gate when the control plane has committed
    /// that epoch) and tries again. Returns <see cref="EpochAdmission.Admitted"/> (the caller must
    /// <see cref="Exit"/>), <see cref="EpochAdmission.Stale"/>, or <see cref="EpochAdmission.Ahead"/>
    /// when the epoch was not confirmed; with the epoch the replica holds. The state argument keeps
    /// callers free of closures.
    /// </summary>
    public async ValueTask<(EpochAdmission Admission, long Current)> EnterAsync<TState>(
        long epoch, TState state, Func<TState, long, CancellationToken, ValueTask<bool>> advance, CancellationToken cancellationToken)
    {
        var admission = TryEnter(epoch, out var current);
        if (admission == EpochAdmission.Ahead && await advance(state, epoch, cancellationToken).ConfigureAwait(false))
        {
            admission = TryEnter(epoch, out current);
        }

        return (admission, current);
    }

    /// <summary>Ends an admission that <see cref="TryEnter"/> granted.</summary>
    public void Exit()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && Interlocked.Read(ref _floor) != Volatile.Read(ref _admitted))
        {
            Volatile.Read(ref _drained)?.TrySetResult();
        }
    }

    /// <summary>
    /// Raises the epoch to <paramref name="epoch"/> (no-op when it is not higher than the floor):
    /// refuses older requests at once, waits for the admitted ones to leave, persists the epoch with
    /// <paramref name="persist"/> (must be durable when it returns), then admits the new epoch.
    /// </summary>
    /// <remarks>
    /// When <paramref name="persist"/> fails or the wait is cancelled the floor stays raised (older
    /// requests stay refused, which is safe) and the new epoch is not admitted; a later raise to the
    /// same or a higher epoch completes it.
    /// </remarks>
    public async Task RaiseAsync(long epoch, Func<long, CancellationToken, Task> persist, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(persist);
        await _raiseLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (epoch <= Volatile.Read(ref _admitted))
            {
                return;
            }

            var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _drained, drained);
            if (epoch > Interlocked.Read(ref _floor))
            {
                Interlocked.Exchange(ref _floor, epoch);
            }

            epoch = Interlocked.Read(ref _floor);
            if (Interlocked.CompareExchange(ref _inFlight, 0, 0) != 0)
            {
                await drained.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            await persist(epoch, cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref _admitted, epoch);
            Volatile.Write(ref _drained, null);
        }
        finally
        {
            _raiseLock.Release();
        }
    }
}
