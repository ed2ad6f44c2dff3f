using System.IO.Pipelines;
using System.Net.Sockets;

namespace Slab.Common;

/// <summary>
/// A connected stream socket (TCP or unix) as an <see cref="IDuplexPipe"/> whose reader receives up
/// to <see cref="ReceiveBufferBytes"/> per call. Used by both ends of both wire protocols (NBD and
/// replication).
/// </summary>
/// <remarks>
/// <para>Why not Kestrel's transport: it receives into 4 KiB pool blocks, so a 1 MiB payload costs
/// hundreds of <c>recvmsg</c> calls (measured: about 500); here about eight.</para>
/// <para>Owns the socket. Nagle is turned off on TCP: both protocols send small headers that must not
/// wait for a full segment.</para>
/// <para>Threading: <see cref="Input"/> and <see cref="Output"/> follow the pipe rules (one reader,
/// one writer); <see cref="Abort"/> may be called from any thread, any number of times;
/// <see cref="DisposeAsync"/> once, after the pipes' users are done with them.</para>
/// </remarks>
internal sealed class SocketPipe : IDuplexPipe, IAsyncDisposable
{
    /// <summary>Bytes one receive call may fill; a 1 MiB payload arrives in about eight calls.</summary>
    public const int ReceiveBufferBytes = 128 * 1024;

    private static readonly StreamPipeReaderOptions ReaderOptions = new(bufferSize: ReceiveBufferBytes, minimumReadSize: ReceiveBufferBytes / 4, leaveOpen: true);
    private static readonly StreamPipeWriterOptions WriterOptions = new(minimumBufferSize: 64 * 1024, leaveOpen: true);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly Lock _lock = new();
    private bool _aborted;

    /// <param name="socket">A connected stream socket; disposed with this pipe.</param>
    public SocketPipe(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (socket.ProtocolType == ProtocolType.Tcp)
        {
            socket.NoDelay = true;
        }

        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, ReaderOptions);
        Output = PipeWriter.Create(_stream, WriterOptions);
    }

    public PipeReader Input { get; }

    public PipeWriter Output { get; }

    /// <summary>
    /// Tears the connection down now: shuts the socket down both ways (a pending receive ends with
    /// end-of-stream, the peer sees end-of-stream or a reset) and cancels a pending read. Idempotent;
    /// after <see cref="DisposeAsync"/> it does nothing.
    /// </summary>
    public void Abort()
    {
        // Under the lock so that DisposeAsync (which aborts first) never completes the reader while
        // another thread is still cancelling its pending read.
        lock (_lock)
        {
            if (_aborted)
            {
                return;
            }

            _aborted = true;
            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
                // Not connected any more (reset by the peer).
            }

            Input.CancelPendingRead();
        }
    }

    /// <summary>Aborts (nothing unsent is flushed), completes both pipe ends and closes the socket.</summary>
    public async ValueTask DisposeAsync()
    {
        Abort();
        await Input.CompleteAsync().ConfigureAwait(false);
        await Output.CompleteAsync().ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
    }
}
