using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace Slab.Replication;

/// <summary>
/// Connects to a replica node over TCP. Each connection is a socket with Nagle off wrapped in pipes
/// (<see cref="PipeReader.Create(Stream, StreamPipeReaderOptions?)"/> over a <see cref="NetworkStream"/>).
/// </summary>
/// <remarks>Thread-safe; holds no connections itself.</remarks>
public sealed class TcpReplicaConnector(EndPoint endPoint, string? nodeName = null) : IReplicaConnector
{
    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true);
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: 64 * 1024, leaveOpen: true);

    public string RemoteName { get; } = nodeName is null ? endPoint.ToString()! : $"{nodeName} ({endPoint})";

    public async ValueTask<IReplicaTransport> ConnectAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken);
            return new Transport(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private sealed class Transport : IReplicaTransport
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;
        private int _aborted;

        public Transport(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
            Input = PipeReader.Create(_stream, ReaderOptions);
            Output = PipeWriter.Create(_stream, WriterOptions);
        }

        public PipeReader Input { get; }

        public PipeWriter Output { get; }

        public void Abort()
        {
            if (Interlocked.Exchange(ref _aborted, 1) == 0)
            {
                // Shutdown wakes a pending receive with end-of-stream; close releases the socket.
                try
                {
                    _socket.Shutdown(SocketShutdown.Both);
                }
                catch (SocketException)
                {
                }
                catch (ObjectDisposedException)
                {
                }

                Input.CancelPendingRead();
            }
        }

        public async ValueTask DisposeAsync()
        {
            Abort();
            await Input.CompleteAsync();
            await Output.CompleteAsync();
            await _stream.DisposeAsync();
        }
    }
}
