using System.Threading.Tasks.Sources;

namespace Slab.Common;

/// <summary>
/// A fixed set of pre-allocated request slots for one connection: the connection's reader takes a
/// slot per request and waits (without allocating) when all are in flight, which bounds the
/// requests in flight. Used by the NBD frontend and the replica protocol server.
/// </summary>
/// <remarks>
/// Threading: any thread may return a slot; only one caller (the connection's reader loop) may wait
/// in <see cref="TakeAsync"/> at a time. A returned slot goes straight to a waiting taker.
/// </remarks>
internal sealed class BoundedSlotPool<TSlot> : IValueTaskSource<TSlot>
    where TSlot : class
{
    private readonly TSlot?[] _free;
    private readonly Lock _lock = new();
    private ManualResetValueTaskSourceCore<TSlot> _takerWait;
    private int _freeCount;
    private bool _takerWaiting;

    /// <param name="capacity">Number of slots, at least 1.</param>
    /// <param name="createSlot">Makes one slot; called <paramref name="capacity"/> times, here.</param>
    public BoundedSlotPool(int capacity, Func<BoundedSlotPool<TSlot>, TSlot> createSlot)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _free = new TSlot?[capacity];
        for (var i = 0; i < capacity; i++)
        {
            _free[i] = createSlot(this);
        }

        _freeCount = capacity;
        Capacity = capacity;
        _takerWait.RunContinuationsAsynchronously = true;
    }

    public int Capacity { get; }

    /// <summary>Slots currently taken (in flight or being filled).</summary>
    public int InUse
    {
        get
        {
            lock (_lock)
            {
                return Capacity - _freeCount;
            }
        }
    }

    /// <summary>Takes a free slot, waiting until one is returned. Only one caller may wait at a time.</summary>
    public ValueTask<TSlot> TakeAsync()
    {
        lock (_lock)
        {
            if (_freeCount > 0)
            {
                var slot = _free[--_freeCount]!;
                _free[_freeCount] = null;
                return new ValueTask<TSlot>(slot);
            }

            if (_takerWaiting)
            {
                throw new InvalidOperationException("only one taker may wait for a request slot");
            }

            _takerWaiting = true;
            _takerWait.Reset();
            return new ValueTask<TSlot>(this, _takerWait.Version);
        }
    }

    /// <summary>Returns a slot; hands it straight to a waiting taker if there is one.</summary>
    public void Return(TSlot slot)
    {
        lock (_lock)
        {
            if (!_takerWaiting)
            {
                _free[_freeCount++] = slot;
                return;
            }

            _takerWaiting = false;
        }

        _takerWait.SetResult(slot);
    }

    TSlot IValueTaskSource<TSlot>.GetResult(short token) => _takerWait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<TSlot>.GetStatus(short token) => _takerWait.GetStatus(token);

    void IValueTaskSource<TSlot>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _takerWait.OnCompleted(continuation, state, token, flags);
}
