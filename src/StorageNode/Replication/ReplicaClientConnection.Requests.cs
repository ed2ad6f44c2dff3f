using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Slab.Block;

namespace Slab.Replication;

// The request path: callers take a slot, write their frame under the send lock and await the slot;
// one reader loop parses responses and completes slots. Per-request path: no allocations.
internal sealed partial class ReplicaClientConnection
{
    /// <summary>
    /// Sends one request and waits for its response. Returns the response whatever its status; throws
    /// <see cref="BlockTargetException"/> (<see cref="BlockError.IOError"/>) when the connection closes
    /// or the request times out, <see cref="OperationCanceledException"/> when
    /// <paramref name="cancellationToken"/> fires first (the request may still run on the server; its
    /// late response is discarded). A Read's data goes to <see cref="ReplicaRequest.Destination"/>,
    /// which must be exactly <see cref="ReplicaRequest.Length"/> bytes.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ReplicaResponse> SendAsync(ReplicaRequest request, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _closed) != 0)
        {
            throw ClosedException();
        }

        await _window.WaitAsync(cancellationToken);
        var slot = TakeSlot();
        try
        {
            var payloadCrc = request.Opcode == ReplicaOpcode.Write && !request.Payload.IsEmpty ? Crc32C.Compute(request.Payload.Span) : 0u;
            var requestId = slot.Arm(request, _timeProvider.GetTimestamp(), _options.RequestTimeout, cancellationToken);
            FailIfClosed(slot);
            await _sendLock.EnterAsync(slot);
            try
            {
                // Nothing is sent for a request already failed (closed, cancelled) while it waited.
                if (slot.State == ReplicaClientSlot.Pending && Volatile.Read(ref _closed) == 0)
                {
                    var header = new RequestHeader(
                        request.Opcode, request.Flags, requestId, request.VolumeId, (ulong)request.Epoch, (ulong)request.Offset, request.Length, payloadCrc);
                    header.Write(_output.GetSpan(ReplicaProtocol.RequestHeaderSize));
                    _output.Advance(ReplicaProtocol.RequestHeaderSize);
                    if (request.Opcode == ReplicaOpcode.Write && !request.Payload.IsEmpty)
                    {
                        _output.Write(request.Payload.Span);
                    }

                    var flushed = await _output.FlushAsync(CancellationToken.None);
                    if (flushed.IsCanceled || flushed.IsCompleted)
                    {
                        Close("the connection ended while sending");
                    }
                }
            }
            catch (Exception ex)
            {
                Close($"send failed: {ex.Message}");
            }
            finally
            {
                _sendLock.Exit();
            }

            return await slot.ResponseAsync();
        }
        finally
        {
            slot.Disarm();
            ReturnSlot(slot);
            _window.Release();
        }
    }

    private ReplicaClientSlot TakeSlot()
    {
        lock (_freeLock)
        {
            return _slots[_freeSlots[--_freeCount]];
        }
    }

    private void ReturnSlot(ReplicaClientSlot slot)
    {
        lock (_freeLock)
        {
            _freeSlots[_freeCount++] = slot.Index;
        }
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
            slot.Complete(new ReplicaResponse(header.Status, Message: message));
            return null;
        }

        switch (slot.Opcode)
        {
            case ReplicaOpcode.Read:
                {
                    if (header.Length != slot.Length)
                    {
                        return "read response length differs from the request";
                    }

                    var crc = await ReadDataAsync(slot.Destination, length);
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

                    var destination = slot.Extents.Span;
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
                    return $"unexpected data in a {slot.Opcode} response";
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
