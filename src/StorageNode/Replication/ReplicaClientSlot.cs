using System.Threading.Tasks.Sources;
using Slab.Block;

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
/// One pre-allocated request slot of a <see cref="ReplicaClientConnection"/>: identifies the request
/// on the wire (its index is the low bits of the request id), holds where the response goes, and is
/// the awaited value-task source of the response and the waiter of the send lock.
/// </summary>
/// <remarks>
/// State machine (an int, changed by compare-exchange): Idle → Pending (armed by the sender) →
/// Claimed (by exactly one of: the reader delivering the response, a timeout or connection close
/// failing it, the caller's cancellation) → Idle (when the sender consumed the result and returns
/// the slot). Only the claimer touches <see cref="Destination"/> after arming, so a timed-out or
/// cancelled request's memory is never written once its caller has been released.
/// </remarks>
internal sealed class ReplicaClientSlot : IValueTaskSource<ReplicaResponse>, IValueTaskSource, ISlotLockWaiter
{
    public const int Idle = 0;
    public const int Pending = 1;
    public const int Claimed = 2;

    private readonly ReplicaClientConnection _connection;
    private readonly ITimer _timer;
    private ManualResetValueTaskSourceCore<ReplicaResponse> _response;
    private ManualResetValueTaskSourceCore<bool> _lockWait;
    private CancellationTokenRegistration _cancellation;
    private ulong _sequence;
    private int _state;

    public ReplicaClientSlot(ReplicaClientConnection connection, int index, TimeProvider timeProvider)
    {
        _connection = connection;
        Index = index;
        _response.RunContinuationsAsynchronously = true;
        _lockWait.RunContinuationsAsynchronously = true;
        _timer = timeProvider.CreateTimer(static state => ((ReplicaClientSlot)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public int Index { get; }

    /// <summary>Id of the armed request (sequence &lt;&lt; SlotBits | index).</summary>
    public ulong RequestId { get; private set; }

    public ReplicaOpcode Opcode { get; private set; }

    public uint Length { get; private set; }

    public Memory<byte> Destination { get; private set; }

    public Memory<BlockExtent> Extents { get; private set; }

    /// <summary><see cref="TimeProvider.GetTimestamp"/> when the request was armed.</summary>
    public long ArmedAt { get; private set; }

    public int State => Volatile.Read(ref _state);

    /// <summary>Prepares the slot for <paramref name="request"/>; returns its request id.</summary>
    public ulong Arm(in ReplicaRequest request, long now, TimeSpan timeout, CancellationToken cancellationToken)
    {
        _response.Reset();
        Opcode = request.Opcode;
        Length = request.Length;
        Destination = request.Destination;
        Extents = request.Extents;
        ArmedAt = now;
        RequestId = (++_sequence << ReplicaProtocol.SlotBits) | (uint)Index;
        Volatile.Write(ref _state, Pending);
        _timer.Change(timeout, Timeout.InfiniteTimeSpan);
        if (cancellationToken.CanBeCanceled)
        {
            _cancellation = cancellationToken.UnsafeRegister(static (state, token) => ((ReplicaClientSlot)state!).OnCancelled(token), this);
        }

        return RequestId;
    }

    /// <summary>Undoes <see cref="Arm"/> after the result was consumed; the slot may be reused afterwards.</summary>
    public void Disarm()
    {
        _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _cancellation.Dispose();
        _cancellation = default;
        Destination = default;
        Extents = default;
        Volatile.Write(ref _state, Idle);
    }

    /// <summary>Claims the armed request for <paramref name="requestId"/>; false when it is not pending under that id.</summary>
    public bool TryClaim(ulong requestId)
    {
        if (RequestId != requestId || Interlocked.CompareExchange(ref _state, Claimed, Pending) != Pending)
        {
            return false;
        }

        if (RequestId == requestId)
        {
            return true;
        }

        // Re-armed between the id check and the claim (a late response of an earlier request).
        Volatile.Write(ref _state, Pending);
        _connection.FailIfClosed(this);
        return false;
    }

    /// <summary>Claims whatever request is pending; false when none is.</summary>
    public bool TryClaimAny() => Interlocked.CompareExchange(ref _state, Claimed, Pending) == Pending;

    /// <summary>Completes a claimed request.</summary>
    public void Complete(in ReplicaResponse response) => _response.SetResult(response);

    /// <summary>Fails a claimed request.</summary>
    public void Fail(Exception exception) => _response.SetException(exception);

    public ValueTask<ReplicaResponse> ResponseAsync() => new(this, _response.Version);

    public void DisposeTimer() => _timer.Dispose();

    private void OnTimer() => _connection.OnSlotTimer(this);

    private void OnCancelled(CancellationToken token)
    {
        if (TryClaimAny())
        {
            Fail(new OperationCanceledException(token));
        }
    }

    ReplicaResponse IValueTaskSource<ReplicaResponse>.GetResult(short token) => _response.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource<ReplicaResponse>.GetStatus(short token) => _response.GetStatus(token);

    void IValueTaskSource<ReplicaResponse>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _response.OnCompleted(continuation, state, token, flags);

    public ValueTask PrepareLockWait()
    {
        _lockWait.Reset();
        return new ValueTask(this, _lockWait.Version);
    }

    public void GrantLock() => _lockWait.SetResult(true);

    void IValueTaskSource.GetResult(short token) => _lockWait.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _lockWait.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        => _lockWait.OnCompleted(continuation, state, token, flags);
}
