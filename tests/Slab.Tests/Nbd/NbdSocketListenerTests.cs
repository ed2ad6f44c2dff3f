using System.Net.Sockets;
using Slab.Block;
using Slab.Frontend.Nbd;
using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.Nbd;

/// <summary>The NBD listener's own duties over a real unix socket: the connection bound and shutdown.</summary>
public sealed class NbdSocketListenerTests
{
    /// <summary>Newstyle greeting: "NBDMAGIC", "IHAVEOPT", 16-bit handshake flags.</summary>
    private const int GreetingSize = 18;

    private static TestExportCatalog Catalog() => new TestExportCatalog().Add("disk", new MemoryBlockTarget(1 << 20), "disk");

    [Fact]
    public async Task A_connection_beyond_the_limit_is_closed_and_the_served_one_keeps_its_session()
    {
        await using var server = await NbdTestServer.StartAsync(Catalog(), new NbdServerOptions { MaxConnections = 1 });
        using var served = await ConnectAsync(server.SocketPath);
        Assert.Equal("NBDMAGIC"u8.ToArray(), (await ReadExactAsync(served, GreetingSize))[..8]);

        using var refused = await ConnectAsync(server.SocketPath);
        Assert.Equal(0, await ReadToEndAsync(refused).WaitAsync(TestData.Patience));

        // The served session still runs its handshake: NBD_OPT_ABORT is acknowledged (a 20-byte
        // option reply), then the server closes.
        await served.SendAsync(ClientFlagsAndAbort());
        Assert.Equal(20, await ReadToEndAsync(served).WaitAsync(TestData.Patience));
    }

    [Fact]
    public async Task Disposing_the_server_closes_open_connections_and_removes_the_socket_file()
    {
        var server = await NbdTestServer.StartAsync(Catalog());
        var path = server.SocketPath;
        try
        {
            using var open = await ConnectAsync(path);
            await ReadExactAsync(open, GreetingSize);
            await server.DisposeAsync().AsTask().WaitAsync(TestData.Patience);
            Assert.Equal(0, await ReadToEndAsync(open).WaitAsync(TestData.Patience));
            Assert.False(File.Exists(path));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    /// <summary>Client flags (fixed newstyle, no zeroes) then NBD_OPT_ABORT: the server acknowledges and closes.</summary>
    private static byte[] ClientFlagsAndAbort()
    {
        var bytes = new byte[4 + 16];
        bytes[3] = 0x03;
        "IHAVEOPT"u8.CopyTo(bytes.AsSpan(4));
        bytes[15] = 2; // NBD_OPT_ABORT, no data
        return bytes;
    }

    private static async Task<Socket> ConnectAsync(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            using var timeout = new CancellationTokenSource(TestData.Patience);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), timeout.Token);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static async Task<byte[]> ReadExactAsync(Socket socket, int count)
    {
        var bytes = new byte[count];
        var filled = 0;
        using var timeout = new CancellationTokenSource(TestData.Patience);
        while (filled < count)
        {
            var n = await socket.ReceiveAsync(bytes.AsMemory(filled), SocketFlags.None, timeout.Token);
            Assert.True(n > 0, "the server closed the connection");
            filled += n;
        }

        return bytes;
    }

    /// <summary>Reads until the server closes (end-of-stream or reset); returns the bytes that came.</summary>
    private static async Task<long> ReadToEndAsync(Socket socket)
    {
        var buffer = new byte[4096];
        long total = 0;
        try
        {
            int n;
            while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None)) > 0)
            {
                total += n;
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        return total;
    }
}
