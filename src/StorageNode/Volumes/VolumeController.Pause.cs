using Slab.Block;

namespace Slab.Volumes;

// The write gate: writes, trims and write-zeroes pass it (two interlocked operations each); a pause
// waits until none is in flight and holds new ones back until it is disposed.
public sealed partial class VolumeController
{
    private readonly SemaphoreSlim _pauseLock = new(1, 1);
    private int _writesInFlight;
    private int _paused;
    private TaskCompletionSource? _drained;
    private TaskCompletionSource _resumed = CompletedSource();

    /// <summary>
    /// Waits until no write is in flight and holds new writes until the result is disposed.
    /// One pause at a time; a second caller waits for the first to finish.
    /// </summary>
    public async Task<IAsyncDisposable> PauseWritesAsync(CancellationToken cancellationToken)
    {
        await _pauseLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _drained, drained);
        Volatile.Write(ref _resumed, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        Interlocked.Exchange(ref _paused, 1);
        if (Volatile.Read(ref _writesInFlight) == 0)
        {
            drained.TrySetResult();
        }

        try
        {
            await drained.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Resume();
            throw;
        }

        return new Pause(this);
    }

    private bool TryEnterWrite()
    {
        Interlocked.Increment(ref _writesInFlight);
        if (Volatile.Read(ref _paused) == 0)
        {
            return true;
        }

        ExitWrite();
        return false;
    }

    private void ExitWrite()
    {
        if (Interlocked.Decrement(ref _writesInFlight) == 0 && Volatile.Read(ref _paused) != 0)
        {
            Volatile.Read(ref _drained)?.TrySetResult();
        }
    }

    private async ValueTask CompleteWriteAsync(ValueTask pending)
    {
        Interlocked.Increment(ref _writesInFlight);
        try
        {
            await pending.ConfigureAwait(false);
        }
        finally
        {
            ExitWrite();
        }
    }

    private async ValueTask AfterPauseAsync<TOperation>(TOperation operation, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        while (!TryEnterWrite())
        {
            await Volatile.Read(ref _resumed).Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await Dispatch(operation, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ExitWrite();
        }
    }

    private ValueTask GatedAsync<TOperation>(TOperation operation, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
        => AfterPauseAsync(operation, cancellationToken);

    private void Resume()
    {
        Interlocked.Exchange(ref _paused, 0);
        Volatile.Read(ref _resumed).TrySetResult();
        _pauseLock.Release();
    }

    private static TaskCompletionSource CompletedSource()
    {
        var source = new TaskCompletionSource();
        source.SetResult();
        return source;
    }

    private sealed class Pause(VolumeController owner) : IAsyncDisposable
    {
        private int _disposed;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Resume();
            }

            return ValueTask.CompletedTask;
        }
    }
}
