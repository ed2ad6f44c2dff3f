using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A deliberately small NBD client for tests, written from the protocol spec independently of our
/// server: fixed newstyle handshake, NBD_OPT_GO, simple replies, one request at a time. It lets a
/// test know exactly which writes were acknowledged and flushed (the crash test needs that).
/// </summary>
public sealed class TestNbdClient : IDisposable
{
    private const ulong OptionMagic = 0x49484156454F5054;
    private const ulong ReplyMagic = 0x3e889045565a9;
    private const uint RequestMagic = 0x25609513;
    private const uint SimpleReplyMagic = 0x67446698;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private ulong _nextHandle = 1;

    private TestNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public long Size { get; private set; }

    public ushort TransmissionFlags { get; private set; }

    public bool IsReadOnly => (TransmissionFlags & 2) != 0;

    public static async Task<TestNbdClient> ConnectAsync(string unixSocket, string export)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(unixSocket));
        var client = new TestNbdClient(socket);
        try
        {
            await client.HandshakeAsync(export);
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private async Task HandshakeAsync(string export)
    {
        var hello = await ReadExactAsync(18);
        if (Encoding.ASCII.GetString(hello, 0, 8) != "NBDMAGIC" || BinaryPrimitives.ReadUInt64BigEndian(hello.AsSpan(8)) != OptionMagic)
        {
            throw new InvalidDataException("not a newstyle NBD server");
        }

        var clientFlags = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(clientFlags, 1 | 2); // FIXED_NEWSTYLE | NO_ZEROES
        await _stream.WriteAsync(clientFlags);

        var name = Encoding.UTF8.GetBytes(export);
        var option = new byte[16 + 4 + name.Length + 2];
        BinaryPrimitives.WriteUInt64BigEndian(option, OptionMagic);
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), 7); // NBD_OPT_GO
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(12), (uint)(4 + name.Length + 2));
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(16), (uint)name.Length);
        name.CopyTo(option, 20);
        await _stream.WriteAsync(option);

        while (true)
        {
            var header = await ReadExactAsync(20);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != ReplyMagic)
            {
                throw new InvalidDataException("bad option reply magic");
            }

            var type = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            var data = length > 0 ? await ReadExactAsync(length) : [];
            if ((type & 0x80000000) != 0)
            {
                throw new NbdErrorException(type, $"server refused export '{export}': reply 0x{type:x8} {Encoding.UTF8.GetString(data)}");
            }

            if (type == 3 && data.Length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(data) == 0) // INFO_EXPORT
            {
                Size = (long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                TransmissionFlags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
            }
            else if (type == 1) // ACK
            {
                return;
            }
        }
    }

    /// <summary>Writes; returns the NBD error (0 = success).</summary>
    public async Task<uint> WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua = false)
    {
        var handle = await SendAsync(1, fua ? (ushort)1 : (ushort)0, offset, (uint)data.Length, data);
        return await ReceiveAsync(handle, Memory<byte>.Empty);
    }

    /// <summary>Reads into <paramref name="destination"/>; returns the NBD error (0 = success).</summary>
    public async Task<uint> ReadAsync(long offset, Memory<byte> destination)
    {
        var handle = await SendAsync(0, 0, offset, (uint)destination.Length, ReadOnlyMemory<byte>.Empty);
        return await ReceiveAsync(handle, destination);
    }

    public async Task<uint> FlushAsync()
    {
        var handle = await SendAsync(3, 0, 0, 0, ReadOnlyMemory<byte>.Empty);
        return await ReceiveAsync(handle, Memory<byte>.Empty);
    }

    public async Task<uint> TrimAsync(long offset, uint length)
    {
        var handle = await SendAsync(4, 0, offset, length, ReadOnlyMemory<byte>.Empty);
        return await ReceiveAsync(handle, Memory<byte>.Empty);
    }

    /// <summary>Sends raw bytes (for malformed-request tests).</summary>
    public ValueTask SendRawAsync(ReadOnlyMemory<byte> bytes) => _stream.WriteAsync(bytes);

    /// <summary>True when the server has closed the connection (reads EOF).</summary>
    public async Task<bool> IsClosedByServerAsync(TimeSpan timeout)
    {
        var buffer = new byte[64];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var n = await _stream.ReadAsync(buffer, cts.Token);
                if (n == 0)
                {
                    return true;
                }
            }
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => _stream.Dispose();

    private async Task<ulong> SendAsync(ushort type, ushort flags, long offset, uint length, ReadOnlyMemory<byte> payload)
    {
        var handle = _nextHandle++;
        var header = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(header, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(header.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(8), handle);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(24), length);
        await _stream.WriteAsync(header);
        if (!payload.IsEmpty)
        {
            await _stream.WriteAsync(payload);
        }

        return handle;
    }

    private async Task<uint> ReceiveAsync(ulong handle, Memory<byte> destination)
    {
        var header = await ReadExactAsync(16);
        if (BinaryPrimitives.ReadUInt32BigEndian(header) != SimpleReplyMagic)
        {
            throw new InvalidDataException("bad simple reply magic");
        }

        var error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        if (BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)) != handle)
        {
            throw new InvalidDataException("reply for an unexpected handle");
        }

        if (error == 0 && !destination.IsEmpty)
        {
            await _stream.ReadExactlyAsync(destination);
        }

        return error;
    }

    private async Task<byte[]> ReadExactAsync(int count)
    {
        var buffer = new byte[count];
        await _stream.ReadExactlyAsync(buffer);
        return buffer;
    }
}

public sealed class NbdErrorException(uint reply, string message) : Exception(message)
{
    public uint Reply { get; } = reply;
}
