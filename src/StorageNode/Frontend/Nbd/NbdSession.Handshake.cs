using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Slab.Block;

namespace Slab.Frontend.Nbd;

// Fixed newstyle handshake and option haggling. Runs once per connection before transmission, so it
// favours clarity over allocation-freedom.
public sealed partial class NbdSession
{
    /// <summary>Longest option payload we read; larger ones are skipped and refused with ERR_TOO_BIG.</summary>
    private const int MaxOptionLength = 64 * 1024;

    private static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);

    private NbdClientFlags _clientFlags;
    private bool _structuredReplies;

    /// <summary>Export whose base:allocation context the last NBD_OPT_SET_META_CONTEXT selected; null when none.</summary>
    private string? _metaContextExport;

    /// <summary>Runs the handshake; true when the transmission phase was entered with an open export.</summary>
    private async Task<bool> HandshakeAsync(CancellationToken connectionClosed)
    {
        using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(connectionClosed, timeout.Token);
        var cancellationToken = linked.Token;
        try
        {
            WriteGreeting();
            await _output.FlushAsync(cancellationToken);

            var flagBytes = await ReadExactAsync(4, cancellationToken);
            if (flagBytes is null)
            {
                return false;
            }

            var clientFlags = BinaryPrimitives.ReadUInt32BigEndian(flagBytes);
            if ((clientFlags & ~(uint)(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes)) != 0)
            {
                NbdLog.ClientFlagsRefused(_logger, _connectionId, clientFlags, "unknown client flags");
                return false;
            }

            if ((clientFlags & (uint)NbdClientFlags.FixedNewstyle) == 0)
            {
                NbdLog.ClientFlagsRefused(_logger, _connectionId, clientFlags, "only fixed newstyle clients are served");
                return false;
            }

            _clientFlags = (NbdClientFlags)clientFlags;
            while (true)
            {
                var header = await ReadExactAsync(NbdMagic.OptionHeaderSize, cancellationToken);
                if (header is null)
                {
                    return false;
                }

                var magic = BinaryPrimitives.ReadUInt64BigEndian(header);
                if (magic != NbdMagic.OptionMagic)
                {
                    NbdLog.BadOptionMagic(_logger, _connectionId, magic);
                    return false;
                }

                var option = (NbdOption)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
                var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
                if (length > MaxOptionLength)
                {
                    if (option == NbdOption.ExportName || !await SkipAsync(length, cancellationToken))
                    {
                        // EXPORT_NAME cannot carry an error reply; the spec wants a hard disconnect.
                        return false;
                    }

                    await ReplyOptionErrorAsync(option, NbdOptionReply.ErrTooBig, "option data too long", cancellationToken);
                    continue;
                }

                var data = await ReadExactAsync((int)length, cancellationToken);
                if (data is null)
                {
                    return false;
                }

                switch (await HandleOptionAsync(option, data, cancellationToken))
                {
                    case OptionOutcome.Transmission:
                        return true;
                    case OptionOutcome.Close:
                        return false;
                }
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !connectionClosed.IsCancellationRequested)
        {
            NbdLog.HandshakeTimedOut(_logger, _connectionId, _options.HandshakeTimeout);
            return false;
        }
    }

    private enum OptionOutcome
    {
        Continue,
        Transmission,
        Close,
    }

    private async Task<OptionOutcome> HandleOptionAsync(NbdOption option, byte[] data, CancellationToken cancellationToken)
    {
        switch (option)
        {
            case NbdOption.ExportName:
                return await HandleExportNameAsync(Utf8.GetString(data), cancellationToken);

            case NbdOption.Abort:
                // The client may already have gone; a failed ACK does not matter.
                await ReplyOptionAsync(option, NbdOptionReply.Ack, ReadOnlyMemory<byte>.Empty, cancellationToken);
                NbdLog.HandshakeAborted(_logger, _connectionId);
                return OptionOutcome.Close;

            case NbdOption.List:
                if (data.Length != 0)
                {
                    await ReplyOptionErrorAsync(option, NbdOptionReply.ErrInvalid, "NBD_OPT_LIST takes no data", cancellationToken);
                    return OptionOutcome.Continue;
                }

                foreach (var export in _catalog.ListExports())
                {
                    await ReplyOptionAsync(option, NbdOptionReply.Server, EncodeServerReply(export), cancellationToken);
                }

                await ReplyOptionAsync(option, NbdOptionReply.Ack, ReadOnlyMemory<byte>.Empty, cancellationToken);
                return OptionOutcome.Continue;

            case NbdOption.Info:
            case NbdOption.Go:
                return await HandleInfoOrGoAsync(option, data, cancellationToken);

            case NbdOption.StructuredReply:
                if (data.Length != 0)
                {
                    await ReplyOptionErrorAsync(option, NbdOptionReply.ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data", cancellationToken);
                    return OptionOutcome.Continue;
                }

                _structuredReplies = true;
                await ReplyOptionAsync(option, NbdOptionReply.Ack, ReadOnlyMemory<byte>.Empty, cancellationToken);
                return OptionOutcome.Continue;

            case NbdOption.ListMetaContext:
            case NbdOption.SetMetaContext:
                await HandleMetaContextAsync(option, data, cancellationToken);
                return OptionOutcome.Continue;

            default:
                // STARTTLS (we serve no TLS), EXTENDED_HEADERS and unknown options.
                await ReplyOptionErrorAsync(option, NbdOptionReply.ErrUnsupported, "option not supported", cancellationToken);
                return OptionOutcome.Continue;
        }
    }

    private async Task<OptionOutcome> HandleExportNameAsync(string name, CancellationToken cancellationToken)
    {
        var lease = await OpenExportAsync(name, cancellationToken);
        if (lease is null)
        {
            // NBD_OPT_EXPORT_NAME has no error reply: the spec mandates a hard disconnect.
            return OptionOutcome.Close;
        }

        EnterTransmission(lease, name);
        var reply = new byte[10 + ((_clientFlags & NbdClientFlags.NoZeroes) != 0 ? 0 : NbdMagic.ExportNameZeroPadding)];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)_exportSize);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)_transmissionFlags);
        _output.Write(reply);
        await _output.FlushAsync(cancellationToken);
        return OptionOutcome.Transmission;
    }

    private async Task<OptionOutcome> HandleInfoOrGoAsync(NbdOption option, byte[] data, CancellationToken cancellationToken)
    {
        if (!TryParseInfoRequest(data, out var name, out var requests))
        {
            await ReplyOptionErrorAsync(option, NbdOptionReply.ErrInvalid, "malformed NBD_OPT_INFO/GO data", cancellationToken);
            return OptionOutcome.Continue;
        }

        var lease = await OpenExportAsync(name, cancellationToken);
        if (lease is null)
        {
            await ReplyOptionErrorAsync(option, NbdOptionReply.ErrUnknown, "no export named '" + name + "'", cancellationToken);
            return OptionOutcome.Continue;
        }

        var keepLease = false;
        try
        {
            var target = lease.Target;
            var flags = ComputeTransmissionFlags(target.Features, _structuredReplies);
            await ReplyOptionAsync(option, NbdOptionReply.Info, EncodeInfoExport(target.Size, flags), cancellationToken);
            if (requests.Contains(NbdInfo.Name))
            {
                await ReplyOptionAsync(option, NbdOptionReply.Info, EncodeInfoString(NbdInfo.Name, name), cancellationToken);
            }

            if (requests.Contains(NbdInfo.Description) && FindDescription(name) is { Length: > 0 } description)
            {
                await ReplyOptionAsync(option, NbdOptionReply.Info, EncodeInfoString(NbdInfo.Description, description), cancellationToken);
            }

            // Always sent (servers may volunteer information); clients that asked must obey it.
            var (minimum, preferred, maximum) = BlockSizes(target.Geometry);
            await ReplyOptionAsync(option, NbdOptionReply.Info, EncodeInfoBlockSize(minimum, preferred, maximum), cancellationToken);
            await ReplyOptionAsync(option, NbdOptionReply.Ack, ReadOnlyMemory<byte>.Empty, cancellationToken);
            if (option == NbdOption.Go)
            {
                EnterTransmission(lease, name);
                keepLease = true;
                return OptionOutcome.Transmission;
            }

            return OptionOutcome.Continue;
        }
        finally
        {
            if (!keepLease)
            {
                await lease.DisposeAsync();
            }
        }
    }

    private async Task HandleMetaContextAsync(NbdOption option, byte[] data, CancellationToken cancellationToken)
    {
        var set = option == NbdOption.SetMetaContext;
        if (set)
        {
            // SET replaces the selection even when it fails.
            _metaContextExport = null;
            if (!_structuredReplies)
            {
                await ReplyOptionErrorAsync(option, NbdOptionReply.ErrInvalid, "negotiate structured replies first", cancellationToken);
                return;
            }
        }

        if (!TryParseMetaContextRequest(data, out var exportName, out var queries))
        {
            await ReplyOptionErrorAsync(option, NbdOptionReply.ErrInvalid, "malformed meta context request", cancellationToken);
            return;
        }

        var matches = false;
        if (set)
        {
            // Only the exact name selects; "base:" and unknown namespaces or leaves are ignored.
            foreach (var query in queries)
            {
                matches |= query == NbdMetaContexts.BaseAllocation;
            }
        }
        else
        {
            matches = queries.Count == 0;
            foreach (var query in queries)
            {
                matches |= query is NbdMetaContexts.BaseAllocation or NbdMetaContexts.BaseNamespace;
            }
        }

        if (matches)
        {
            // LIST replies carry id 0 (reserved); SET replies carry the id used in block-status chunks.
            var id = set ? NbdMetaContexts.BaseAllocationId : 0;
            await ReplyOptionAsync(option, NbdOptionReply.MetaContext, EncodeMetaContext(id, NbdMetaContexts.BaseAllocation), cancellationToken);
            if (set)
            {
                _metaContextExport = exportName;
            }
        }

        await ReplyOptionAsync(option, NbdOptionReply.Ack, ReadOnlyMemory<byte>.Empty, cancellationToken);
    }

    private async Task<IBlockTargetLease?> OpenExportAsync(string name, CancellationToken cancellationToken)
    {
        IBlockTargetLease? lease;
        try
        {
            lease = await _catalog.OpenExportAsync(name, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            NbdLog.OpenExportFailed(_logger, _connectionId, name, ex);
            return null;
        }

        if (lease is null)
        {
            NbdLog.UnknownExport(_logger, _connectionId, name);
        }

        return lease;
    }

    private string? FindDescription(string name)
    {
        foreach (var export in _catalog.ListExports())
        {
            if (export.Name == name)
            {
                return export.Description;
            }
        }

        return null;
    }

    /// <summary>Transmission flags for a target with <paramref name="features"/>.</summary>
    internal static NbdTransmissionFlags ComputeTransmissionFlags(BlockTargetFeatures features, bool structuredReplies)
    {
        var flags = NbdTransmissionFlags.HasFlags;
        var readOnly = (features & BlockTargetFeatures.ReadOnly) != 0;
        if (readOnly)
        {
            flags |= NbdTransmissionFlags.ReadOnly;
        }

        if ((features & BlockTargetFeatures.Flush) != 0)
        {
            flags |= NbdTransmissionFlags.SendFlush;
        }

        if ((features & BlockTargetFeatures.ForceUnitAccess) != 0)
        {
            flags |= NbdTransmissionFlags.SendFua;
        }

        if (!readOnly && (features & BlockTargetFeatures.Trim) != 0)
        {
            flags |= NbdTransmissionFlags.SendTrim;
        }

        if (!readOnly && (features & BlockTargetFeatures.WriteZeroes) != 0)
        {
            flags |= NbdTransmissionFlags.SendWriteZeroes;
        }

        if (structuredReplies)
        {
            // Every read is answered with a single data chunk, so "don't fragment" is always honoured.
            flags |= NbdTransmissionFlags.SendDf;
        }

        if ((features & BlockTargetFeatures.MultiConnection) != 0)
        {
            flags |= NbdTransmissionFlags.CanMultiConn;
        }

        return flags;
    }

    /// <summary>Advertised block sizes, clamped to what the spec allows and to our payload limit.</summary>
    private (uint Minimum, uint Preferred, uint Maximum) BlockSizes(BlockGeometry geometry)
    {
        var minimum = (uint)Math.Clamp(geometry.Minimum, 1, 65536);
        var preferred = Math.Max((uint)Math.Max(geometry.Preferred, 1), Math.Max(minimum, 512));
        var maximum = (uint)Math.Min(geometry.Maximum > 0 ? geometry.Maximum : int.MaxValue, _options.MaxRequestPayload);
        return (minimum, preferred, Math.Max(maximum, preferred));
    }

    private void WriteGreeting()
    {
        var span = _output.GetSpan(18);
        BinaryPrimitives.WriteUInt64BigEndian(span, NbdMagic.InitPassword);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], NbdMagic.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(span[16..], (ushort)(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes));
        _output.Advance(18);
    }

    private async ValueTask ReplyOptionAsync(NbdOption option, NbdOptionReply reply, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var span = _output.GetSpan(NbdMagic.OptionReplyHeaderSize);
        BinaryPrimitives.WriteUInt64BigEndian(span, NbdMagic.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(span[8..], (uint)option);
        BinaryPrimitives.WriteUInt32BigEndian(span[12..], (uint)reply);
        BinaryPrimitives.WriteUInt32BigEndian(span[16..], (uint)payload.Length);
        _output.Advance(NbdMagic.OptionReplyHeaderSize);
        _output.Write(payload.Span);
        NbdLog.OptionReplied(_logger, _connectionId, (uint)option, (uint)reply);
        await _output.FlushAsync(cancellationToken);
    }

    private ValueTask ReplyOptionErrorAsync(NbdOption option, NbdOptionReply error, string message, CancellationToken cancellationToken)
        => ReplyOptionAsync(option, error, Utf8.GetBytes(message), cancellationToken);

    private static bool TryParseInfoRequest(byte[] data, out string name, out List<NbdInfo> requests)
    {
        name = "";
        requests = [];
        var span = data.AsSpan();
        if (span.Length < 6)
        {
            return false;
        }

        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (nameLength > NbdMagic.MaxStringLength || nameLength > (uint)span.Length - 6)
        {
            return false;
        }

        name = Utf8.GetString(span.Slice(4, (int)nameLength));
        span = span[(4 + (int)nameLength)..];
        var count = BinaryPrimitives.ReadUInt16BigEndian(span);
        span = span[2..];
        if (span.Length != count * 2)
        {
            return false;
        }

        for (var i = 0; i < count; i++)
        {
            requests.Add((NbdInfo)BinaryPrimitives.ReadUInt16BigEndian(span[(2 * i)..]));
        }

        return true;
    }

    private static bool TryParseMetaContextRequest(byte[] data, out string exportName, out List<string> queries)
    {
        exportName = "";
        queries = [];
        var span = data.AsSpan();
        if (!TryReadString(ref span, out exportName) || span.Length < 4)
        {
            return false;
        }

        var count = BinaryPrimitives.ReadUInt32BigEndian(span);
        span = span[4..];
        for (var i = 0u; i < count; i++)
        {
            if (!TryReadString(ref span, out var query))
            {
                return false;
            }

            queries.Add(query);
        }

        return span.IsEmpty;
    }

    /// <summary>Reads a 32-bit length and that many bytes of UTF-8 (at most the spec's 4096).</summary>
    private static bool TryReadString(ref Span<byte> span, out string value)
    {
        value = "";
        if (span.Length < 4)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (length > NbdMagic.MaxStringLength || length > (uint)span.Length - 4)
        {
            return false;
        }

        value = Utf8.GetString(span.Slice(4, (int)length));
        span = span[(4 + (int)length)..];
        return true;
    }

    private static byte[] EncodeServerReply(ExportDescription export)
    {
        var name = Utf8.GetBytes(export.Name);
        var description = Utf8.GetBytes(export.Description ?? "");
        var reply = new byte[4 + name.Length + description.Length];
        BinaryPrimitives.WriteUInt32BigEndian(reply, (uint)name.Length);
        name.CopyTo(reply, 4);
        description.CopyTo(reply, 4 + name.Length);
        return reply;
    }

    private static byte[] EncodeInfoExport(long size, NbdTransmissionFlags flags)
    {
        var reply = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(reply, (ushort)NbdInfo.Export);
        BinaryPrimitives.WriteUInt64BigEndian(reply.AsSpan(2), (ulong)size);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(10), (ushort)flags);
        return reply;
    }

    private static byte[] EncodeInfoString(NbdInfo type, string value)
    {
        var bytes = Utf8.GetBytes(value);
        var reply = new byte[2 + bytes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(reply, (ushort)type);
        bytes.CopyTo(reply, 2);
        return reply;
    }

    private static byte[] EncodeInfoBlockSize(uint minimum, uint preferred, uint maximum)
    {
        var reply = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(reply, (ushort)NbdInfo.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(2), minimum);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(6), preferred);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(10), maximum);
        return reply;
    }

    private static byte[] EncodeMetaContext(uint id, string name)
    {
        var bytes = Utf8.GetBytes(name);
        var reply = new byte[4 + bytes.Length];
        BinaryPrimitives.WriteUInt32BigEndian(reply, id);
        bytes.CopyTo(reply, 4);
        return reply;
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes; null when the client closed first.</summary>
    private async ValueTask<byte[]?> ReadExactAsync(int count, CancellationToken cancellationToken)
    {
        if (count == 0)
        {
            return [];
        }

        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            if (buffer.Length >= count)
            {
                var bytes = buffer.Slice(0, count).ToArray();
                _input.AdvanceTo(buffer.GetPosition(count));
                return bytes;
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                _input.AdvanceTo(buffer.End);
                NbdLog.TransportEnded(_logger, _connectionId, "client closed during the handshake");
                return null;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Discards <paramref name="count"/> bytes; false when the client closed first.</summary>
    private async ValueTask<bool> SkipAsync(long count, CancellationToken cancellationToken)
    {
        while (count > 0)
        {
            var result = await _input.ReadAsync(cancellationToken);
            var buffer = result.Buffer;
            var n = Math.Min(buffer.Length, count);
            _input.AdvanceTo(buffer.GetPosition(n));
            count -= n;
            if (count > 0 && (result.IsCompleted || result.IsCanceled))
            {
                return false;
            }
        }

        return true;
    }
}
