using Slab.Buffers;
using Slab.Common;

namespace Slab.Frontend.Fuse;

// The parts of FuseFileServer that await (an unsafe context cannot).
public sealed partial class FuseFileServer
{
    /// <summary>
    /// Stops serving: unmounts the filesystem if it is still mounted (lazily when busy), waits up to
    /// <see cref="FuseFileServerOptions.StopTimeout"/> for the readers and in-flight requests, closes
    /// the device. Idempotent.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (MountTable.At(_mountPoint) is { FilesystemType: "fuse.slab" } mount)
        {
            if (FuseNative.Umount2(_mountPoint, 0) != 0)
            {
                _ = FuseNative.Umount2(_mountPoint, FuseNative.MNT_DETACH);
            }

            Abort(mount.Minor);
        }

        try
        {
            await _stopped.Task.WaitAsync(_options.StopTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            FuseLog.StopTimedOut(_logger, _mountPoint, _options.StopTimeout);
            return; // the readers still use the descriptor: leave it open
        }

        FuseNative.Close(_fd);
    }

    private async Task CompleteLaterAsync(AlignedBuffer buffer, ulong unique, ValueTask pending, int replyLength, uint writtenBytes)
    {
        try
        {
            var error = 0;
            try
            {
                await pending.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                error = ErrnoOf(e);
            }

            Answer(buffer, unique, error, error == 0 ? Reply(buffer, replyLength, writtenBytes) : 0);
        }
        finally
        {
            buffer.Return();
            if (Interlocked.Decrement(ref _running) == 0)
            {
                _stopped.TrySetResult();
            }
        }
    }

}
