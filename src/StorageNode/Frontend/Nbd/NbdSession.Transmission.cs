using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Slab.Block;
using Slab.Buffers;

using Slab.Common;

namespace Slab.Frontend.Nbd;

// The transmission phase: one reader loop parsing requests, request slots running them on the thread
// pool, replies serialised by an async lock. Everything here is on the per-request path: no LINQ,
// closures, strings or per-request objects.
public sealed partial class NbdSession
{
    /// <summary>Longest extent length a block-status descriptor carries (32-bit field, 4 KiB aligned).</summary>
    private const long MaxDescriptorLength = 0xFFFF_F000;

    private IBlockTarget? _target;
    private long _exportSize;
    private NbdTransmissionFlags _transmissionFlags;
    private bool _blockStatusEnabled;
    private int _minimumBlock = 1;
    private int _maxPayload;
    private BoundedSlotPool<NbdRequestSlot>? _slots;
    private SlotLock<NbdRequestSlot>? _replyLock;
    private CancellationToken _requestToken;

    /// <summary>Opens the export for transmission: size and flags are fixed from here on.</summary>
    private void EnterTransmission(IBlockTargetLease lease, string name)
    {
        _lease = lease;
        _target = lease.Target;
        _exportSize = _target.Size;
        _transmissionFlags = ComputeTransmissionFlags(_target.Features, _structuredReplies);
        _blockStatusEnabled = _structuredReplies && _metaContextExport == name;
        var (minimum, _, maximum) = BlockSizes(_target.Geometry);
        _minimumBlock = (int)minimum;
        _maxPayload = (int)Math.Min(maximum, (uint)_options.MaxRequestPayload);
        _slots = new BoundedSlotPool<NbdRequestSlot>(_options.MaxInFlightPerConnection, pool => new NbdRequestSlot(this, pool));
        _replyLock = new SlotLock<NbdRequestSlot>(_options.MaxInFlightPerConnection);
        NbdLog.ExportOpened(_logger, _connectionId, name, _exportSize, (ushort)_transmissionFlags, _structuredReplies, _blockStatusEnabled);
    }

    /// <summary>
    /// The reader loop: parses requests, fills slots (reading WRITE payloads into aligned buffers) and
    /// dispatches them. Returns after NBD_CMD_DISC, end of input or a protocol violation, once every
    /// dispatched request has finished.
    /// </summary>
    private async Task TransmitAsync(CancellationToken connectionClosed)
    {
        _requestToken = connectionClosed;
        var slots = _slots!;
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync(connectionClosed);
                var buffer = result.Buffer;
                if (buffer.Length < NbdMagic.RequestHeaderSize)
                {
                    if (result.IsCompleted || result.IsCanceled)
                    {
                        _input.AdvanceTo(buffer.End);
                        NbdLog.TransportEnded(_logger, _connectionId, buffer.IsEmpty ? "client closed" : "client closed inside a request header");
                        return;
                    }

                    _input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }

                var header = RequestHeader.Parse(buffer);
                _input.AdvanceTo(buffer.GetPosition(NbdMagic.RequestHeaderSize));
                if (header.Magic != NbdMagic.Request)
                {
                    NbdLog.MalformedRequest(_logger, _connectionId, "bad request magic");
                    return;
                }

                if (header.Command == NbdCommand.Disconnect)
                {
                    NbdLog.SoftDisconnect(_logger, _connectionId);
                    return;
                }

                if (header.Command == NbdCommand.Write && header.Length > (uint)_maxPayload)
                {
                    // The payload would follow; we will not buffer it and cannot resynchronise.
                    NbdLog.MalformedRequest(_logger, _connectionId, "WRITE payload longer than the maximum");
                    return;
                }

                var slot = await slots.TakeAsync();
                slot.Command = header.Command;
                slot.Flags = header.Flags;
                slot.Cookie = header.Cookie;
                slot.Offset = header.Offset;
                slot.Length = header.Length;
                if (header.Command == NbdCommand.Write && header.Length > 0)
                {
                    var length = (int)header.Length;
                    var payload = AlignedBufferPool.Shared.Rent(length);
                    slot.Buffer = payload;
                    var filled = 0;
                    while (filled < length)
                    {
                        ReadResult chunk;
                        try
                        {
                            chunk = await _input.ReadAsync(connectionClosed);
                        }
                        catch
                        {
                            slot.ReturnBuffer();
                            slots.Return(slot);
                            throw;
                        }

                        var data = chunk.Buffer;
                        var n = (int)Math.Min(data.Length, length - filled);
                        data.Slice(0, n).CopyTo(payload.GetSpan().Slice(filled, n));
                        filled += n;
                        _input.AdvanceTo(data.GetPosition(n));
                        if (filled < length && (chunk.IsCompleted || chunk.IsCanceled))
                        {
                            slot.ReturnBuffer();
                            slots.Return(slot);
                            NbdLog.TransportEnded(_logger, _connectionId, "client closed inside a WRITE payload");
                            return;
                        }
                    }
                }

                ThreadPool.UnsafeQueueUserWorkItem(slot, preferLocal: false);
            }
        }
        finally
        {
            // Wait for every request in flight: taking all slots means none is running.
            for (var i = 0; i < slots.Capacity; i++)
            {
                await slots.TakeAsync();
            }
        }
    }

    /// <summary>Runs one request and writes its reply. Never throws.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask ProcessRequestAsync(NbdRequestSlot slot)
    {
        var target = _target!;
        var errno = Validate(slot);
        if (errno == NbdErrno.None)
        {
            try
            {
                var offset = (long)slot.Offset;
                var length = (int)slot.Length;
                var fua = (slot.Flags & NbdCommandFlags.Fua) != 0;
                switch (slot.Command)
                {
                    case NbdCommand.Read:
                        if (length > 0)
                        {
                            slot.Buffer = AlignedBufferPool.Shared.Rent(length);
                            await target.ReadAsync(offset, slot.Buffer.Memory[..length], _requestToken);
                        }

                        break;
                    case NbdCommand.Write:
                        if (length > 0)
                        {
                            await target.WriteAsync(offset, slot.Buffer!.Memory[..length], fua ? BlockWriteFlags.ForceUnitAccess : BlockWriteFlags.None, _requestToken);
                            slot.ReturnBuffer();
                        }
                        else if (fua)
                        {
                            await target.FlushAsync(_requestToken);
                        }

                        break;
                    case NbdCommand.Flush:
                        await target.FlushAsync(_requestToken);
                        break;
                    case NbdCommand.Trim:
                        await target.TrimAsync(offset, slot.Length, _requestToken);
                        if (fua)
                        {
                            await target.FlushAsync(_requestToken);
                        }

                        break;
                    case NbdCommand.WriteZeroes:
                        var zeroFlags = (fua ? WriteZeroesFlags.ForceUnitAccess : WriteZeroesFlags.None)
                            | ((slot.Flags & NbdCommandFlags.NoHole) != 0 ? WriteZeroesFlags.NoHole : WriteZeroesFlags.None);
                        await target.WriteZeroesAsync(offset, slot.Length, zeroFlags, _requestToken);
                        break;
                    case NbdCommand.BlockStatus:
                        await CollectExtentsAsync(target, slot);
                        break;
                }
            }
            catch (BlockTargetException ex)
            {
                errno = NbdErrors.ToErrno(ex.Error);
                NbdLog.RequestFailed(_logger, _connectionId, (ushort)slot.Command, slot.Offset, slot.Length, ex.Error);
            }
            catch (OperationCanceledException) when (_requestToken.IsCancellationRequested)
            {
                errno = NbdErrno.ESHUTDOWN;
            }
            catch (Exception ex)
            {
                errno = NbdErrno.EIO;
                NbdLog.RequestCrashed(_logger, _connectionId, (ushort)slot.Command, slot.Offset, slot.Length, ex);
            }
        }

        var replyLock = _replyLock!;
        try
        {
            await slot.EnterAsync(replyLock);
            try
            {
                WriteReply(slot, errno);
                await _output.FlushAsync(CancellationToken.None);
            }
            finally
            {
                replyLock.Exit();
            }
        }
        catch (Exception ex)
        {
            NbdLog.ReplyFailed(_logger, _connectionId, ex);
        }
        finally
        {
            slot.ReturnBuffer();
        }
    }

    /// <summary>Checks a request against the negotiated export; <see cref="NbdErrno.None"/> when valid.</summary>
    private NbdErrno Validate(NbdRequestSlot slot)
    {
        var features = _target!.Features;
        var readOnly = (features & BlockTargetFeatures.ReadOnly) != 0;
        var allowedFlags = NbdCommandFlags.Fua;
        var checkRange = true;
        switch (slot.Command)
        {
            case NbdCommand.Read:
                if (_structuredReplies)
                {
                    allowedFlags |= NbdCommandFlags.DontFragment;
                }

                if (slot.Length > (uint)_maxPayload)
                {
                    return NbdErrno.EINVAL;
                }

                break;
            case NbdCommand.Write:
                if (readOnly)
                {
                    return NbdErrno.EPERM;
                }

                break;
            case NbdCommand.Trim:
                if (readOnly)
                {
                    return NbdErrno.EPERM;
                }

                if ((features & BlockTargetFeatures.Trim) == 0)
                {
                    return NbdErrno.EINVAL;
                }

                break;
            case NbdCommand.WriteZeroes:
                allowedFlags |= NbdCommandFlags.NoHole;
                if (readOnly)
                {
                    return NbdErrno.EPERM;
                }

                if ((features & BlockTargetFeatures.WriteZeroes) == 0)
                {
                    return NbdErrno.EINVAL;
                }

                break;
            case NbdCommand.Flush:
                if ((features & BlockTargetFeatures.Flush) == 0)
                {
                    return NbdErrno.EINVAL;
                }

                checkRange = false;
                break;
            case NbdCommand.BlockStatus:
                allowedFlags |= NbdCommandFlags.RequestOne;
                if (!_blockStatusEnabled || slot.Length == 0)
                {
                    return NbdErrno.EINVAL;
                }

                break;
            default:
                return NbdErrno.EINVAL;
        }

        if ((slot.Flags & ~allowedFlags) != 0)
        {
            return NbdErrno.EINVAL;
        }

        if (checkRange)
        {
            var size = (ulong)_exportSize;
            if (slot.Offset > size || slot.Length > size - slot.Offset)
            {
                return NbdErrno.EINVAL;
            }

            if (_minimumBlock > 1 && ((slot.Offset | slot.Length) & (ulong)(_minimumBlock - 1)) != 0)
            {
                return NbdErrno.EINVAL;
            }
        }

        return NbdErrno.None;
    }

    /// <summary>Fills the slot's extents for a validated block-status request (base:allocation semantics).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CollectExtentsAsync(IBlockTarget target, NbdRequestSlot slot)
    {
        var requested = (long)slot.Length;
        var extents = slot.Extents;
        var count = 0;
        if ((target.Features & BlockTargetFeatures.BlockStatus) != 0)
        {
            var want = (slot.Flags & NbdCommandFlags.RequestOne) != 0 ? 1 : extents.Length;
            count = await target.GetExtentsAsync((long)slot.Offset, requested, extents.AsMemory(0, want), _requestToken);
        }

        // Descriptors must be non-zero and fit 32 bits; a clamped extent ends the list because what
        // follows would no longer be contiguous.
        var kept = 0;
        for (var i = 0; i < count; i++)
        {
            var length = extents[i].Length;
            if (length <= 0)
            {
                continue;
            }

            var clamped = Math.Min(length, MaxDescriptorLength);
            extents[kept++] = new BlockExtent(clamped, extents[i].Flags);
            if (clamped != length)
            {
                break;
            }
        }

        if (kept == 0)
        {
            // Status 0 (allocated, contents unknown) is always a truthful answer.
            extents[0] = new BlockExtent(Math.Min(requested, MaxDescriptorLength), ExtentFlags.Data);
            kept = 1;
        }

        if ((slot.Flags & NbdCommandFlags.RequestOne) != 0)
        {
            kept = 1;
            if (extents[0].Length > requested)
            {
                extents[0] = new BlockExtent(requested, extents[0].Flags);
            }
        }

        slot.ExtentCount = kept;
    }

    /// <summary>Encodes the reply of <paramref name="slot"/> into the output; caller holds the reply lock.</summary>
    private void WriteReply(NbdRequestSlot slot, NbdErrno errno)
    {
        var output = _output;
        var cookie = slot.Cookie;
        var isRead = slot.Command == NbdCommand.Read;
        if (!_structuredReplies)
        {
            var span = output.GetSpan(NbdMagic.SimpleReplyHeaderSize);
            BinaryPrimitives.WriteUInt32BigEndian(span, NbdMagic.SimpleReply);
            BinaryPrimitives.WriteUInt32BigEndian(span[4..], (uint)errno);
            BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
            output.Advance(NbdMagic.SimpleReplyHeaderSize);
            if (isRead && errno == NbdErrno.None && slot.Length > 0)
            {
                output.Write(slot.Buffer!.GetSpan()[..(int)slot.Length]);
            }

            return;
        }

        if (errno != NbdErrno.None)
        {
            // NBD_REPLY_TYPE_ERROR with an empty message.
            var span = output.GetSpan(NbdMagic.StructuredReplyHeaderSize + 6);
            WriteChunkHeader(span, NbdReplyType.Error, cookie, 6);
            BinaryPrimitives.WriteUInt32BigEndian(span[20..], (uint)errno);
            BinaryPrimitives.WriteUInt16BigEndian(span[24..], 0);
            output.Advance(NbdMagic.StructuredReplyHeaderSize + 6);
            return;
        }

        if (isRead && slot.Length > 0)
        {
            var span = output.GetSpan(NbdMagic.StructuredReplyHeaderSize + 8);
            WriteChunkHeader(span, NbdReplyType.OffsetData, cookie, 8 + slot.Length);
            BinaryPrimitives.WriteUInt64BigEndian(span[20..], slot.Offset);
            output.Advance(NbdMagic.StructuredReplyHeaderSize + 8);
            output.Write(slot.Buffer!.GetSpan()[..(int)slot.Length]);
            return;
        }

        if (slot.Command == NbdCommand.BlockStatus)
        {
            var count = slot.ExtentCount;
            var payloadLength = 4 + (8 * count);
            var span = output.GetSpan(NbdMagic.StructuredReplyHeaderSize + payloadLength);
            WriteChunkHeader(span, NbdReplyType.BlockStatus, cookie, (uint)payloadLength);
            BinaryPrimitives.WriteUInt32BigEndian(span[20..], NbdMetaContexts.BaseAllocationId);
            var extents = slot.Extents;
            for (var i = 0; i < count; i++)
            {
                var at = NbdMagic.StructuredReplyHeaderSize + 4 + (8 * i);
                BinaryPrimitives.WriteUInt32BigEndian(span[at..], (uint)extents[i].Length);
                BinaryPrimitives.WriteUInt32BigEndian(span[(at + 4)..], (uint)extents[i].Flags & 3u);
            }

            output.Advance(NbdMagic.StructuredReplyHeaderSize + payloadLength);
            return;
        }

        // Success without payload (or a zero-length read): NBD_REPLY_TYPE_NONE.
        var none = output.GetSpan(NbdMagic.StructuredReplyHeaderSize);
        WriteChunkHeader(none, NbdReplyType.None, cookie, 0);
        output.Advance(NbdMagic.StructuredReplyHeaderSize);
    }

    private static void WriteChunkHeader(Span<byte> span, NbdReplyType type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(span, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(span[4..], (ushort)NbdReplyFlags.Done);
        BinaryPrimitives.WriteUInt16BigEndian(span[6..], (ushort)type);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], length);
    }

    /// <summary>A request header as it came off the wire.</summary>
    private readonly record struct RequestHeader(uint Magic, NbdCommandFlags Flags, NbdCommand Command, ulong Cookie, ulong Offset, uint Length)
    {
        public static RequestHeader Parse(in ReadOnlySequence<byte> buffer)
        {
            Span<byte> bytes = stackalloc byte[NbdMagic.RequestHeaderSize];
            buffer.Slice(0, NbdMagic.RequestHeaderSize).CopyTo(bytes);
            return new RequestHeader(
                BinaryPrimitives.ReadUInt32BigEndian(bytes),
                (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(bytes[4..]),
                (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(bytes[6..]),
                BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]),
                BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]),
                BinaryPrimitives.ReadUInt32BigEndian(bytes[24..]));
        }
    }
}
