using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Slab.Block;
using Slab.Buffers;

using Slab.Common;

namespace Slab.Replication;

// The request phase: one reader loop parsing frames into slots, slots running on the thread pool,
// responses serialised by a slot lock. Per-request path: no LINQ, closures, strings or objects.
internal sealed partial class ReplicaServerConnection
{
    private BoundedSlotPool<ReplicaServerSlot>? _slots;
    private SlotLock<ReplicaServerSlot>? _responseLock;
    private CancellationToken _requestToken;

    /// <summary>
    /// Reads requests until end of input or a malformed frame, then waits for every dispatched
    /// request. A frame is fully validated (magic, header crc, length limit, payload crc) before a
    /// slot is dispatched, so a bad frame never reaches a target.
    /// </summary>
    private async Task ServeRequestsAsync(CancellationToken connectionClosed)
    {
        var options = _server.Options;
        _requestToken = connectionClosed;
        var slots = _slots = new BoundedSlotPool<ReplicaServerSlot>(options.MaxInFlightPerConnection, pool => new ReplicaServerSlot(this, pool));
        _responseLock = new SlotLock<ReplicaServerSlot>(options.MaxInFlightPerConnection);
        var maxPayload = (uint)options.MaxPayload;
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync(connectionClosed);
                var buffer = result.Buffer;
                if (buffer.Length < ReplicaProtocol.RequestHeaderSize)
                {
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        _input.AdvanceTo(buffer.End);
                        if (buffer.IsEmpty)
                        {
                            ReplicaLog.TransportEnded(_logger, _connectionId, "client closed");
                        }
                        else
                        {
                            ReplicaLog.MalformedFrame(_logger, _connectionId, "truncated request header");
                        }

                        return;
                    }

                    _input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }

                var header = Parse(buffer, out var error);
                _input.AdvanceTo(buffer.GetPosition(ReplicaProtocol.RequestHeaderSize));
                if (error is not null)
                {
                    ReplicaLog.MalformedFrame(_logger, _connectionId, error);
                    return;
                }

                if ((header.Opcode is ReplicaOpcode.Read or ReplicaOpcode.Write) && header.Length > maxPayload)
                {
                    ReplicaLog.MalformedFrame(_logger, _connectionId, "length over the maximum payload");
                    return;
                }

                var slot = await slots.TakeAsync();
                slot.Header = header;
                if (header.Opcode == ReplicaOpcode.Write && header.Length > 0)
                {
                    string? failure;
                    try
                    {
                        failure = await ReadPayloadAsync(slot, connectionClosed);
                    }
                    catch
                    {
                        // The transport failed (peer reset, connection closed) mid-payload: the slot was
                        // never dispatched, so give it back or the drain below would wait for it forever.
                        slot.ReturnBuffer();
                        slots.Return(slot);
                        throw;
                    }

                    if (failure is not null)
                    {
                        slot.ReturnBuffer();
                        slots.Return(slot);
                        ReplicaLog.MalformedFrame(_logger, _connectionId, failure);
                        return;
                    }
                }

                ThreadPool.UnsafeQueueUserWorkItem(slot, preferLocal: false);
            }
        }
        finally
        {
            // Taking every slot means no request is running any more.
            for (var i = 0; i < slots.Capacity; i++)
            {
                await slots.TakeAsync();
            }
        }
    }

    private static RequestHeader Parse(in System.Buffers.ReadOnlySequence<byte> buffer, out string? error)
    {
        Span<byte> bytes = stackalloc byte[ReplicaProtocol.RequestHeaderSize];
        ReplicaProtocol.Peek(buffer, bytes);
        return RequestHeader.TryParse(bytes, out error) ?? default;
    }

    /// <summary>Reads a Write's payload into a rented buffer and checks its crc; a reason when the frame is bad.</summary>
    private async ValueTask<string?> ReadPayloadAsync(ReplicaServerSlot slot, CancellationToken cancellationToken)
    {
        var length = (int)slot.Header.Length;
        var payload = AlignedBufferPool.Shared.Rent(length);
        slot.Buffer = payload;
        var filled = 0;
        var crc = 0u;
        while (filled < length)
        {
            var chunk = await _input.ReadAsync(cancellationToken);
            var data = chunk.Buffer;
            var n = (int)Math.Min(data.Length, length - filled);
            var part = data.Slice(0, n);
            part.CopyTo(payload.GetSpan().Slice(filled, n));
            crc = Crc32C.Append(crc, part);
            filled += n;
            _input.AdvanceTo(data.GetPosition(n));
            if (filled < length && (chunk.IsCompleted || chunk.IsCanceled))
            {
                return "truncated write payload";
            }
        }

        return crc == slot.Header.PayloadCrc ? null : "bad write payload crc";
    }

    /// <summary>Runs one request and writes its response. Never throws.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask ProcessAsync(ReplicaServerSlot slot)
    {
        var header = slot.Header;
        var status = ReplicaStatus.Ok;
        var dataLength = 0;
        try
        {
            status = ValidateFlags(header);
            if (status == ReplicaStatus.Ok && !(header.Opcode == ReplicaOpcode.Ping && header.VolumeId == Guid.Empty))
            {
                if (!_server.Resolver.TryGetReplica(header.VolumeId, out var replica))
                {
                    ReplicaLog.UnknownVolume(_logger, _connectionId, header.VolumeId);
                    status = ReplicaStatus.UnknownVolume;
                }
                else if (header.Opcode == ReplicaOpcode.Ping)
                {
                    // Volume info needs no fencing: it touches no data.
                    BinaryPrimitives.WriteInt64LittleEndian(slot.Scratch, replica.Target.Size);
                    BinaryPrimitives.WriteInt64LittleEndian(slot.Scratch.AsSpan(8), replica.Gate.Epoch);
                    dataLength = ReplicaProtocol.PingInfoSize;
                }
                else
                {
                    (status, dataLength) = await AdmitAndExecuteAsync(replica, slot);
                }
            }
        }
        catch (BlockTargetException ex)
        {
            status = ReplicaProtocol.ToStatus(ex.Error);
            dataLength = EncodeMessage(slot, ex.Message);
            ReplicaLog.RequestFailed(_logger, _connectionId, header.Opcode, header.Offset, header.Length, ex.Error);
        }
        catch (OperationCanceledException) when (_requestToken.IsCancellationRequested)
        {
            status = ReplicaStatus.Closed;
            dataLength = 0;
        }
        catch (Exception ex)
        {
            status = ReplicaStatus.IOError;
            dataLength = 0;
            ReplicaLog.RequestCrashed(_logger, _connectionId, header.Opcode, header.Offset, header.Length, ex);
        }

        if (status != ReplicaStatus.Ok)
        {
            slot.ReturnBuffer();
        }

        var data = dataLength == 0
            ? ReadOnlyMemory<byte>.Empty
            : slot.Buffer is { } buffer ? buffer.Memory[..dataLength] : slot.Scratch.AsMemory(0, dataLength);
        var response = new ResponseHeader(status, header.RequestId, (uint)dataLength, dataLength == 0 ? 0 : Crc32C.Compute(data.Span));
        var responseLock = _responseLock!;
        try
        {
            await slot.EnterAsync(responseLock);
            try
            {
                response.Write(_output.GetSpan(ReplicaProtocol.ResponseHeaderSize));
                _output.Advance(ReplicaProtocol.ResponseHeaderSize);
                if (dataLength > 0)
                {
                    _output.Write(data.Span);
                }

                await _output.FlushAsync(CancellationToken.None);
            }
            finally
            {
                responseLock.Exit();
            }
        }
        catch (Exception ex)
        {
            ReplicaLog.ResponseFailed(_logger, _connectionId, ex);
        }
        finally
        {
            slot.ReturnBuffer();
        }
    }

    private static ReplicaStatus ValidateFlags(in RequestHeader header)
    {
        var allowed = header.Opcode switch
        {
            ReplicaOpcode.Write or ReplicaOpcode.Trim => ReplicaRequestFlags.ForceUnitAccess,
            ReplicaOpcode.WriteZeroes => ReplicaRequestFlags.ForceUnitAccess | ReplicaRequestFlags.NoHole,
            ReplicaOpcode.Read or ReplicaOpcode.Flush or ReplicaOpcode.Extents or ReplicaOpcode.Ping => ReplicaRequestFlags.None,
            _ => (ReplicaRequestFlags?)null,
        };
        if (allowed is not { } mask)
        {
            return ReplicaStatus.NotSupported;
        }

        if ((header.Flags & ~mask) != 0 || header.Offset > long.MaxValue || header.Epoch > long.MaxValue)
        {
            return ReplicaStatus.InvalidArgument;
        }

        return ReplicaStatus.Ok;
    }

    /// <summary>
    /// Fencing: the request runs only while admitted by the replica's gate at its epoch (so an epoch
    /// raise waits for it); lower epochs are stale, higher ones go to the resolver and are tried again.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(ReplicaStatus Status, int DataLength)> AdmitAndExecuteAsync(ReplicaHandle replica, ReplicaServerSlot slot)
    {
        var header = slot.Header;
        var (admission, current) = await replica.Gate.EnterAsync(
            (long)header.Epoch,
            (_server.Resolver, header.VolumeId),
            static (s, epoch, ct) => s.Resolver.TryAdvanceEpochAsync(s.VolumeId, epoch, ct),
            _requestToken);
        switch (admission)
        {
            case EpochAdmission.Admitted:
                try
                {
                    return (ReplicaStatus.Ok, await ExecuteAsync(replica.Target, slot));
                }
                finally
                {
                    replica.Gate.Exit();
                }

            case EpochAdmission.Stale:
                ReplicaLog.StaleEpoch(_logger, _connectionId, header.VolumeId, header.Epoch, current);
                return (ReplicaStatus.StaleEpoch, 0);

            default:
                ReplicaLog.EpochRejected(_logger, _connectionId, header.VolumeId, header.Epoch, current);
                return (ReplicaStatus.EpochRejected, 0);
        }
    }

    /// <summary>Calls the target for a validated, admitted request; returns the response data length.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ExecuteAsync(IBlockTarget target, ReplicaServerSlot slot)
    {
        var header = slot.Header;
        var offset = (long)header.Offset;
        var length = (int)Math.Min(header.Length, int.MaxValue);
        var fua = (header.Flags & ReplicaRequestFlags.ForceUnitAccess) != 0;
        var token = _requestToken;
        switch (header.Opcode)
        {
            case ReplicaOpcode.Read:
                if (length == 0)
                {
                    return 0;
                }

                slot.Buffer = AlignedBufferPool.Shared.Rent(length);
                await target.ReadAsync(offset, slot.Buffer.Memory[..length], token);
                return length;
            case ReplicaOpcode.Write:
                if (length > 0)
                {
                    await target.WriteAsync(offset, slot.Buffer!.Memory[..length], fua ? BlockWriteFlags.ForceUnitAccess : BlockWriteFlags.None, token);
                    slot.ReturnBuffer();
                }
                else if (fua)
                {
                    await target.FlushAsync(token);
                }

                return 0;
            case ReplicaOpcode.Flush:
                await target.FlushAsync(token);
                return 0;
            case ReplicaOpcode.Trim:
                await target.TrimAsync(offset, header.Length, token);
                if (fua)
                {
                    await target.FlushAsync(token);
                }

                return 0;
            case ReplicaOpcode.WriteZeroes:
                var zeroFlags = (fua ? WriteZeroesFlags.ForceUnitAccess : WriteZeroesFlags.None)
                    | ((header.Flags & ReplicaRequestFlags.NoHole) != 0 ? WriteZeroesFlags.NoHole : WriteZeroesFlags.None);
                await target.WriteZeroesAsync(offset, header.Length, zeroFlags, token);
                return 0;
            case ReplicaOpcode.Extents:
                if (header.Length == 0)
                {
                    return 0;
                }

                var extents = slot.Extents;
                var count = await target.GetExtentsAsync(offset, header.Length, extents, token);
                count = Math.Clamp(count, 0, extents.Length);
                var scratch = slot.Scratch.AsSpan();
                for (var i = 0; i < count; i++)
                {
                    var at = i * ReplicaProtocol.ExtentSize;
                    BinaryPrimitives.WriteInt64LittleEndian(scratch[at..], extents[i].Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(scratch[(at + 8)..], (uint)extents[i].Flags);
                    BinaryPrimitives.WriteUInt32LittleEndian(scratch[(at + 12)..], 0);
                }

                return count * ReplicaProtocol.ExtentSize;
            default:
                return 0;
        }
    }

    /// <summary>Puts an error message (UTF-8, truncated to the protocol limit) into the slot's scratch.</summary>
    private static int EncodeMessage(ReplicaServerSlot slot, string message)
    {
        slot.ReturnBuffer();
        var scratch = slot.Scratch.AsSpan(0, ReplicaProtocol.MaxMessageLength);
        if (ReplicaProtocol.Utf8.GetByteCount(message) > scratch.Length)
        {
            message = message[..(ReplicaProtocol.MaxMessageLength / 4)];
        }

        return ReplicaProtocol.Utf8.GetBytes(message, scratch);
    }
}
