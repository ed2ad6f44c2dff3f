using System.Threading.Tasks.Sources;
using Slab.Block;

using Slab.Common;

namespace Slab.Replication;

/// <summary>A request as the client sends it; <see cref="Destination"/>/<see cref="Extents"/> receive a Read's data or extents.</summary>
internal readonly record struct ReplicaRequest(
    ReplicaOpcode Opcode,
    ReplicaRequestFlags Flags,
    Guid VolumeId,
    long Epoch,
    long Offset,
    uint Length,
    ReadOnlyMemory<byte> Payload = default,
    Memory<byte> Destination = default,
    Memory<BlockExtent> Extents = default);

/// <summary>
/// What came back: the status, and per opcode the extent count (Extents) or volume size and epoch
/// (Ping); <see cref="Message"/> is the server's text for a failed status.
/// </summary>
internal readonly record struct ReplicaResponse(ReplicaStatus Status, int Count = 0, long Size = 0, long Epoch = 0, string? Message = null);

/// <summary>
/// One pre-allocated request of a <see cref="ReplicaClientConnection"/>: identifies the request on
/// the wire (its index is the low bits of the request id), drives sending its frame, receives its
/// response, and is itself the value-task source the caller awaits, so a request allocates nothing.
/// </summary>
/// <remarks>
/// <para>State (an int, changed by compare-exchange): Idle → Pending (armed) ⇄ Sending (its frame is
/// being written) → Claimed → Idle. Exactly one party claims a request: the reader delivering the
/// response (from Pending or Sending), or a timeout, connection close or the caller's cancellation
/// (from Pending only, so the caller is never released while its payload is being copied). Only the
/// claimer touches <see cref="ReplicaRequest.Destination"/> after arming.</para>
/// <para>Recycling: two holds are taken when armed, one released when the send phase ends, one when
/// the caller consumed the result (<c>GetResult</c>); the last release returns the slot to the
/// connection, so a slot is never reused while either side still uses it.</para>
/// </remarks>
internal sealed class ReplicaClientSlot : IValueTaskSource, IValueTaskSource<int>, IValueTaskSource<ReplicaResponse>, ISlotLockWaiter, IThreadPoolWorkItem
{
    public const int Idle = 0;
    public const int Pending = 1;
    public const int Sending = 2;
    public const int Claimed = 3;

    private readonly ReplicaClientConnection _connection;
    private readonly ITimer _timer;
    private readonly Action _onFlushed;
    private ManualResetValueTaskSourceCore<ReplicaResponse> _response;
    private System.Runtime.CompilerServices.ValueTaskAwaiter<System.IO.Pipelines.FlushResult> _flush;
    private CancellationTokenRegistration _cancellation;
    private CancellationToken _cancellationToken;
    private ulong _sequence;
    private ulong _requestId;
    private int _state;
    private int _holds;

    public ReplicaClientSlot(ReplicaClientConnection connection, int index, TimeProvider timeProvider)
    {
        _connection = connection;
        Index = index;
        _onFlushed = OnFlushed;
        _response.RunContinuationsAsynchronously = true;
        _timer = timeProvider.CreateTimer(static state => ((ReplicaClientSlot)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int Index { get; }

    /// <summary>Id of the armed request (sequence &lt;&lt; SlotBits | index).</summary>
    public ulong RequestId => Volatile.Read(ref _requestId);

    /// <summary>The armed request (its memory is released when the slot is recycled).</summary>
    public ReplicaRequest Request { get; private set; }

    /// <summary>CRC-32C of a Write's payload, computed when armed.</summary>
    public uint PayloadCrc { get; private set; }

    /// <summary><see cref="TimeProvider.GetTimestamp"/> when the request was armed.</summary>
    public long ArmedAt { get; private set; }

    public int State => Volatile.Read(ref _state);

    /// <summary>Token of the armed request's value task.</summary>
    public short Version => _response.Version;

    /// <summary>Prepares the slot for <paramref name="request"/> (the slot is Idle and owned by the caller).</summary>
    public void Arm(in ReplicaRequest request, long now, TimeSpan timeout, CancellationToken cancellationToken)
    {
        _response.Reset();
        Request = request;
        PayloadCrc = request.Opcode == ReplicaOpcode.Write && !request.Payload.IsEmpty ? Crc32C.Compute(request.Payload.Span) : 0u;
        ArmedAt = now;
        _cancellationToken = cancellationToken;
        Volatile.Write(ref _holds, 2);
        Volatile.Write(ref _requestId, (++_sequence << ReplicaProtocol.SlotBits) | (uint)Index);
        Volatile.Write(ref _state, Pending);
        _timer.Change(timeout, Timeout.InfiniteTimeSpan);
        if (cancellationToken.CanBeCanceled)
        {
            _cancellation = cancellationToken.UnsafeRegister(static state => ((ReplicaClientSlot)state!).OnCancelled(), this);
        }
    }

    /// <summary>Pending → Sending; false when the request was already claimed (nothing must be sent).</summary>
    public bool BeginSending() => Interlocked.CompareExchange(ref _state, Sending, Pending) == Pending;

    /// <summary>Sending → Pending, then applies a close or cancellation that was held off while sending.</summary>
    public void EndSending()
    {
        Interlocked.CompareExchange(ref _state, Pending, Sending);
        _connection.FailIfClosed(this);
        if (_cancellationToken.IsCancellationRequested)
        {
            OnCancelled();
        }
    }

    /// <summary>Claims the request <paramref name="requestId"/> for its response; false when it is not outstanding.</summary>
    public bool TryClaim(ulong requestId)
    {
        if (RequestId != requestId)
        {
            return false;
        }

        var previous = Interlocked.CompareExchange(ref _state, Claimed, Pending);
        if (previous == Sending)
        {
            previous = Interlocked.CompareExchange(ref _state, Claimed, Sending);
        }

        if (previous is not (Pending or Sending))
        {
            return false;
        }

        if (RequestId == requestId)
        {
            return true;
        }

        // Re-armed between the id check and the claim (a late response of an earlier request).
        Volatile.Write(ref _state, previous);
        _connection.FailIfClosed(this);
        return false;
    }

    /// <summary>Claims a Pending request (not one being sent); false when there is none.</summary>
    public bool TryClaimPending() => Interlocked.CompareExchange(ref _state, Claimed, Pending) == Pending;

    public void Complete(in ReplicaResponse response) => _response.SetResult(response);

    public void Fail(Exception exception) => _response.SetException(exception);

    /// <summary>Waits for <paramref name="flush"/> without allocating; the send phase then ends in <see cref="ReplicaClientConnection.EndSend"/>.</summary>
    public void AwaitFlush(ValueTask<System.IO.Pipelines.FlushResult> flush)
    {
        _flush = flush.GetAwaiter();
        _flush.UnsafeOnCompleted(_onFlushed);
    }

    private void OnFlushed()
    {
        var flush = _flush;
        _flush = default;
        _connection.EndSend(this, flush);
    }

    /// <summary>Drops one hold; the last one recycles the slot into its connection.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref _holds) != 0)
        {
            return;
        }

        _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _cancellation.Dispose();
        _cancellation = default;
        _cancellationToken = default;
        Request = default;
        Volatile.Write(ref _state, Idle);
        _connection.Recycle(this);
    }

    public void DisposeTimer() => _timer.Dispose();

    private void OnTimer() => _connection.OnSlotTimer(this);

    private void OnCancelled()
    {
        if (TryClaimPending())
        {
            Fail(new OperationCanceledException(_cancellationToken));
        }
    }

    // The send lock was handed to this slot by another thread: write the frame on the pool.
    public void OnQueued()
    {
    }

    public void GrantLock() => ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: true);

    void IThreadPoolWorkItem.Execute() => _connection.WriteFrame(this);

    // The caller consumes the result exactly once through one of these; that releases its hold.
    void IValueTaskSource.GetResult(short token)
    {
        try
        {
            _response.GetResult(token);
        }
        finally
        {
            Release();
        }
    }

    int IValueTaskSource<int>.GetResult(short token)
    {
        try
        {
            return _response.GetResult(token).Count;
        }
        finally
        {
            Release();
        }
    }

    ReplicaResponse IValueTaskSource<ReplicaResponse>.GetResult(short token)
    {
        try
        {
            return _response.GetResult(token);
        }
        finally
        {
            Release();
        }
    }

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _response.GetStatus(token);

    ValueTaskSourceStatus IValueTaskSource<int>.GetStatus(short token) => _response.GetStatus(token);

    ValueTaskSourceStatus IValueTaskSource<ReplicaResponse>.GetStatus(short token) => _response.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _response.OnCompleted(continuation, state, token, flags);

    void IValueTaskSource<int>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _response.OnCompleted(continuation, state, token, flags);

    void IValueTaskSource<ReplicaResponse>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _response.OnCompleted(continuation, state, token, flags);
}
