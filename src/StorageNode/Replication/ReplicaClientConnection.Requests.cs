using Slab.Common;
using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Slab.Block;

namespace Slab.Replication;

// The request path: callers take a slot, write their frame under the send lock and await the slot;
// one reader loop parses responses and completes slots. Per-request path: no allocations.
internal sealed partial class ReplicaClientConnection
{
    /// <summary>
    /// Sends one request; the returned task completes when its response arrived. Failures, all
    /// naming the node: a failed status → <see cref="BlockTargetException"/> with the mapped
    /// <see cref="BlockError"/>; connection closed or request timed out → <see cref="BlockError.IOError"/>;
    /// <paramref name="cancellationToken"/> fired while the request waited → <see cref="OperationCanceledException"/>
    /// (the request may still run on the server; its late response is discarded). A Read's data goes
    /// to <see cref="ReplicaRequest.Destination"/>, which must be exactly <see cref="ReplicaRequest.Length"/>
    /// bytes; an Extents response fills <see cref="ReplicaRequest.Extents"/>.
    /// </summary>
    /// <remarks>
    /// No allocation when a slot is free: the task is backed by the request's slot. When the window
    /// is full the caller waits asynchronously (that wait allocates).
    /// </remarks>
    public ValueTask SendAsync(in ReplicaRequest request, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _closed) != 0)
        {
            return ValueTask.FromException(ClosedException());
        }

        if (!_window.Wait(0, CancellationToken.None))
        {
            return WaitThenSendAsync(request, cancellationToken);
        }

        var slot = Start(request, cancellationToken);
        return new ValueTask(slot, slot.Version);
    }

    /// <summary>As <see cref="SendAsync"/>; the result is the number of extents written to <see cref="ReplicaRequest.Extents"/>.</summary>
    public ValueTask<int> SendForCountAsync(in ReplicaRequest request, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _closed) != 0)
        {
            return ValueTask.FromException<int>(ClosedException());
        }

        if (!_window.Wait(0, CancellationToken.None))
        {
            return WaitThenSendForCountAsync(request, cancellationToken);
        }

        var slot = Start(request, cancellationToken);
        return new ValueTask<int>(slot, slot.Version);
    }

    /// <summary>As <see cref="SendAsync"/>, returning the whole response (Ping).</summary>
    public ValueTask<ReplicaResponse> SendForResponseAsync(in ReplicaRequest request, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _closed) != 0)
        {
            return ValueTask.FromException<ReplicaResponse>(ClosedException());
        }

        if (!_window.Wait(0, CancellationToken.None))
        {
            return WaitThenSendForResponseAsync(request, cancellationToken);
        }

        var slot = Start(request, cancellationToken);
        return new ValueTask<ReplicaResponse>(slot, slot.Version);
    }

    private async ValueTask WaitThenSendAsync(ReplicaRequest request, CancellationToken cancellationToken)
        => await WaitThenSendForResponseAsync(request, cancellationToken);

    private async ValueTask<int> WaitThenSendForCountAsync(ReplicaRequest request, CancellationToken cancellationToken)
        => (await WaitThenSendForResponseAsync(request, cancellationToken)).Count;

    /// <summary>The window is full: waits for a slot (failing when the connection closes meanwhile), then sends.</summary>
    private async ValueTask<ReplicaResponse> WaitThenSendForResponseAsync(ReplicaRequest request, CancellationToken cancellationToken)
    {
        using (var linked = cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _closing.Token) : null)
        {
            try
            {
                await _window.WaitAsync(linked?.Token ?? _closing.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw ClosedException();
            }
        }

        if (Volatile.Read(ref _closed) != 0)
        {
            _window.Release();
            throw ClosedException();
        }

        var slot = Start(request, cancellationToken);
        return await new ValueTask<ReplicaResponse>(slot, slot.Version);
    }

    /// <summary>Takes a slot (a window permit is held), arms it and starts sending its frame.</summary>
    private ReplicaClientSlot Start(in ReplicaRequest request, CancellationToken cancellationToken)
    {
        ReplicaClientSlot slot;
        lock (_freeLock)
        {
            slot = _slots[_freeSlots[--_freeCount]];
        }

        slot.Arm(request, _timeProvider.GetTimestamp(), _options.RequestTimeout, cancellationToken);
        FailIfClosed(slot);
        if (_sendLock.Enter(slot))
        {
            WriteFrame(slot);
        }

        return slot;
    }

    /// <summary>Writes the slot's frame and flushes; the caller holds the send lock, which <see cref="EndSend"/> releases.</summary>
    internal void WriteFrame(ReplicaClientSlot slot)
    {
        ValueTask<FlushResult> flush = default;
        var sending = false;
        try
        {
            // Nothing is sent for a request already failed (closed, cancelled) while it waited.
            if (Volatile.Read(ref _closed) == 0 && slot.BeginSending())
            {
                sending = true;
                var request = slot.Request;
                var header = new RequestHeader(
                    request.Opcode, request.Flags, slot.RequestId, request.VolumeId, (ulong)request.Epoch, (ulong)request.Offset, request.Length, slot.PayloadCrc);
                header.Write(_output.GetSpan(ReplicaProtocol.RequestHeaderSize));
                _output.Advance(ReplicaProtocol.RequestHeaderSize);
                if (request.Opcode == ReplicaOpcode.Write && !request.Payload.IsEmpty)
                {
                    _output.Write(request.Payload.Span);
                }

                flush = _output.FlushAsync(CancellationToken.None);
                if (!flush.IsCompleted)
                {
                    slot.AwaitFlush(flush);
                    return;
                }
            }
        }
        catch (Exception ex)
        {
            Close($"send failed: {ex.Message}");
            flush = default;
        }

        EndSend(slot, sending ? flush.GetAwaiter() : default);
    }

    /// <summary>Ends the send phase of a slot: checks the flush, releases the send lock and the slot's send hold.</summary>
    internal void EndSend(ReplicaClientSlot slot, ValueTaskAwaiter<FlushResult> flush)
    {
        try
        {
            var result = flush.GetResult();
            if (result.IsCanceled || result.IsCompleted)
            {
                Close("the connection ended while sending");
            }
        }
        catch (Exception ex)
        {
            Close($"send failed: {ex.Message}");
        }
        finally
        {
            _sendLock.Exit();
            slot.EndSending();
            slot.Release();
        }
    }

    /// <summary>Takes back a slot both the sender and the caller are done with.</summary>
    internal void Recycle(ReplicaClientSlot slot)
    {
        lock (_freeLock)
        {
            _freeSlots[_freeCount++] = slot.Index;
        }

        _window.Release();
    }

    /// <summary>The exception a failed status raises, naming the volume, node and request.</summary>
    private BlockTargetException StatusFailure(in ReplicaRequest request, ReplicaStatus status, string? serverMessage)
    {
        var detail = serverMessage is null ? string.Empty : $": {serverMessage}";
        var message = status switch
        {
            ReplicaStatus.StaleEpoch => $"volume {request.VolumeId}: replica on node {RemoteName} fenced epoch {request.Epoch}; another controller owns the volume{detail}",
            ReplicaStatus.EpochRejected => $"volume {request.VolumeId}: replica on node {RemoteName} has not accepted epoch {request.Epoch}{detail}",
            ReplicaStatus.UnknownVolume => $"volume {request.VolumeId}: node {RemoteName} holds no replica of it",
            _ => $"volume {request.VolumeId}: {request.Opcode} at {request.Offset} (+{request.Length}) on replica node {RemoteName} failed with {status}{detail}",
        };
        return new BlockTargetException(ReplicaProtocol.ToBlockError(status), message);
    }

    /// <summary>The reader loop: runs until the connection closes; closes it on any malformed response.</summary>
    private async Task ReadResponsesAsync()
    {
        var reason = "the server closed the connection";
        try
        {
            reason = await ReadLoopAsync();
        }
        catch (Exception ex)
        {
            reason = $"receive failed: {ex.Message}";
        }
        finally
        {
            if (IsOpen)
            {
                ReplicaLog.ClientConnectionLost(_logger, RemoteName, reason);
            }

            Close(reason);
        }
    }

    /// <summary>Parses responses until the input ends or a frame is malformed; returns why it stopped.</summary>
    private async Task<string> ReadLoopAsync()
    {
        var maxData = (uint)Math.Max(_options.MaxPayload, _scratch.Length);
        var slotMask = (1UL << ReplicaProtocol.SlotBits) - 1;
        while (true)
        {
            var result = await _input.ReadAsync();
            var buffer = result.Buffer;
            if (result.IsCanceled)
            {
                // Close aborted the transport: whatever arrived since is not delivered.
                _input.AdvanceTo(buffer.End);
                return Volatile.Read(ref _closeReason) ?? "the connection was aborted";
            }

            if (buffer.Length < ReplicaProtocol.ResponseHeaderSize)
            {
                if (result.IsCompleted || result.IsCanceled)
                {
                    _input.AdvanceTo(buffer.End);
                    return buffer.IsEmpty ? "the server closed the connection" : "truncated response header";
                }

                _input.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            var header = ParseResponse(buffer, out var error);
            _input.AdvanceTo(buffer.GetPosition(ReplicaProtocol.ResponseHeaderSize));
            if (error is not null)
            {
                return error;
            }

            if (header.Length > maxData)
            {
                return "response length over the maximum";
            }

            var index = (int)(header.RequestId & slotMask);
            if (index >= _slots.Length)
            {
                return "response for an unknown request id";
            }

            var slot = _slots[index];
            if (!slot.TryClaim(header.RequestId))
            {
                // A late response to a request that was cancelled: skip its data.
                if (await ReadDataAsync(Memory<byte>.Empty, (int)header.Length) < 0)
                {
                    return "truncated response data";
                }

                continue;
            }

            var failure = await DeliverAsync(slot, header);
            if (failure is not null)
            {
                slot.Fail(new BlockTargetException(BlockError.IOError, $"replica node {RemoteName}: {failure}"));
                return failure;
            }
        }
    }

    private static ResponseHeader ParseResponse(in ReadOnlySequence<byte> buffer, out string? error)
    {
        Span<byte> bytes = stackalloc byte[ReplicaProtocol.ResponseHeaderSize];
        ReplicaProtocol.Peek(buffer, bytes);
        return ResponseHeader.TryParse(bytes, out error) ?? default;
    }

    /// <summary>Reads the response data into its place and completes the claimed slot; a reason when the response is malformed.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<string?> DeliverAsync(ReplicaClientSlot slot, ResponseHeader header)
    {
        var length = (int)header.Length;
        if (header.Status != ReplicaStatus.Ok)
        {
            if (length > ReplicaProtocol.MaxMessageLength)
            {
                return "error message longer than the maximum";
            }

            var crc = await ReadDataAsync(_scratch.AsMemory(0, length), length);
            if (crc < 0)
            {
                return "truncated response data";
            }

            if (length > 0 && crc != header.DataCrc)
            {
                return "bad response data crc";
            }

            var message = length == 0 ? null : ReplicaProtocol.Utf8.GetString(_scratch, 0, length);
            slot.Fail(StatusFailure(slot.Request, header.Status, message));
            return null;
        }

        switch (slot.Request.Opcode)
        {
            case ReplicaOpcode.Read:
                {
                    if (header.Length != slot.Request.Length)
                    {
                        return "read response length differs from the request";
                    }

                    var crc = await ReadDataAsync(slot.Request.Destination, length);
                    if (crc < 0)
                    {
                        return "truncated read data";
                    }

                    if (length > 0 && crc != header.DataCrc)
                    {
                        return "bad read data crc";
                    }

                    slot.Complete(new ReplicaResponse(ReplicaStatus.Ok));
                    return null;
                }

            case ReplicaOpcode.Extents:
                {
                    if (length % ReplicaProtocol.ExtentSize != 0 || length > _scratch.Length)
                    {
                        return "malformed extents response";
                    }

                    var crc = await ReadDataAsync(_scratch.AsMemory(0, length), length);
                    if (crc < 0)
                    {
                        return "truncated extents data";
                    }

                    if (length > 0 && crc != header.DataCrc)
                    {
                        return "bad extents data crc";
                    }

                    var destination = slot.Request.Extents.Span;
                    var count = Math.Min(length / ReplicaProtocol.ExtentSize, destination.Length);
                    for (var i = 0; i < count; i++)
                    {
                        var at = i * ReplicaProtocol.ExtentSize;
                        destination[i] = new BlockExtent(
                            BinaryPrimitives.ReadInt64LittleEndian(_scratch.AsSpan(at)),
                            (ExtentFlags)BinaryPrimitives.ReadUInt32LittleEndian(_scratch.AsSpan(at + 8)));
                    }

                    slot.Complete(new ReplicaResponse(ReplicaStatus.Ok, Count: count));
                    return null;
                }

            case ReplicaOpcode.Ping:
                {
                    if (length != 0 && length != ReplicaProtocol.PingInfoSize)
                    {
                        return "malformed ping response";
                    }

                    var crc = await ReadDataAsync(_scratch.AsMemory(0, length), length);
                    if (crc < 0 || (length > 0 && crc != header.DataCrc))
                    {
                        return "bad ping response";
                    }

                    slot.Complete(length == 0
                        ? new ReplicaResponse(ReplicaStatus.Ok)
                        : new ReplicaResponse(
                            ReplicaStatus.Ok,
                            Size: BinaryPrimitives.ReadInt64LittleEndian(_scratch),
                            Epoch: BinaryPrimitives.ReadInt64LittleEndian(_scratch.AsSpan(8))));
                    return null;
                }

            default:
                if (length != 0)
                {
                    return $"unexpected data in a {slot.Request.Opcode} response";
                }

                slot.Complete(new ReplicaResponse(ReplicaStatus.Ok));
                return null;
        }
    }

    /// <summary>
    /// Reads <paramref name="length"/> bytes into <paramref name="destination"/> (discards them when it
    /// is empty); returns their CRC-32C, or -1 when the input ended first.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<long> ReadDataAsync(Memory<byte> destination, int length)
    {
        var crc = 0u;
        var filled = 0;
        while (filled < length)
        {
            var result = await _input.ReadAsync();
            var data = result.Buffer;
            if (result.IsCanceled)
            {
                _input.AdvanceTo(data.Start);
                return -1;
            }

            var n = (int)Math.Min(data.Length, length - filled);
            var part = data.Slice(0, n);
            if (!destination.IsEmpty)
            {
                part.CopyTo(destination.Span.Slice(filled, n));
            }

            crc = Crc32C.Append(crc, part);
            filled += n;
            _input.AdvanceTo(data.GetPosition(n));
            if (filled < length && (result.IsCompleted || result.IsCanceled))
            {
                return -1;
            }
        }

        return crc;
    }
}
