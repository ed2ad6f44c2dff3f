using Slab.Block;
using Slab.Store;

namespace Slab.Volumes;

/// <summary>
/// The block target of one open volume on this node: routes I/O to the volume's replica, carries the
/// volume's epoch, and can pause writes at a write boundary (for crash-consistent snapshots).
/// </summary>
/// <remarks>
/// Threading: all block operations may run concurrently. <see cref="PauseWritesAsync"/> waits until
/// no write, trim or write-zeroes is in flight and holds new ones back until the returned pause is
/// disposed; reads and flushes continue. The write gate costs two interlocked operations per write and
/// allocates only while a pause is in effect.
/// </remarks>
public sealed class VolumeController : IBlockTarget, IDisposable
{
    private readonly IReplicaTarget _replica;
    private readonly SemaphoreSlim _pauseLock = new(1, 1);
    private int _writesInFlight;
    private int _paused;
    private TaskCompletionSource? _drained;
    private TaskCompletionSource _resumed = CompletedSource();

    public VolumeController(VolumeRecord volume, IReplicaTarget replica)
    {
        VolumeId = volume.Id;
        Epoch = volume.Epoch;
        _replica = replica;
    }

    public string VolumeId { get; }

    /// <summary>The volume's epoch this controller was opened with.</summary>
    public long Epoch { get; }

    public long Size => _replica.Size;

    public BlockTargetFeatures Features => _replica.Features;

    public BlockGeometry Geometry => _replica.Geometry;

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        => _replica.ReadAsync(offset, destination, cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => _replica.FlushAsync(cancellationToken);

    public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
        => _replica.GetExtentsAsync(offset, length, destination, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        if (!TryEnterWrite())
        {
            return WriteAfterPauseAsync(offset, source, flags, cancellationToken);
        }

        try
        {
            var pending = _replica.WriteAsync(offset, source, flags, cancellationToken);
            if (pending.IsCompletedSuccessfully)
            {
                // Consume the result even so: a value task backed by a pooled source (a replica
                // request slot) is recycled only when its result is taken.
                pending.GetAwaiter().GetResult();
                return ValueTask.CompletedTask;
            }

            return CompleteWriteAsync(pending);
        }
        finally
        {
            // A pending write holds its own gate entry in CompleteWriteAsync.
            ExitWrite();
        }
    }

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
        => GatedAsync(static (r, o, l, f, ct) => r.TrimAsync(o, l, ct), offset, length, default, cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
        => GatedAsync(static (r, o, l, f, ct) => r.WriteZeroesAsync(o, l, f, ct), offset, length, flags, cancellationToken);

    /// <summary>Grows the replica; the new size is visible to I/O at once.</summary>
    public void Grow(long newSizeBytes) => _replica.Grow(newSizeBytes);

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

    public void Dispose()
    {
        _replica.Dispose();
        _pauseLock.Dispose();
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

    private async ValueTask WriteAfterPauseAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        while (!TryEnterWrite())
        {
            await Volatile.Read(ref _resumed).Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await _replica.WriteAsync(offset, source, flags, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ExitWrite();
        }
    }

    private async ValueTask GatedAsync(
        Func<IReplicaTarget, long, long, WriteZeroesFlags, CancellationToken, ValueTask> operation,
        long offset,
        long length,
        WriteZeroesFlags flags,
        CancellationToken cancellationToken)
    {
        while (!TryEnterWrite())
        {
            await Volatile.Read(ref _resumed).Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await operation(_replica, offset, length, flags, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            ExitWrite();
        }
    }

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
