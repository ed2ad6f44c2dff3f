namespace Slab.Common;

/// <summary>
/// Runs a fixed number of workers side by side (copy loops that each take the next piece of shared
/// work). The first worker to fail cancels the others through the token they get, and the call
/// throws that failure, not a sibling's <see cref="OperationCanceledException"/> it caused.
/// </summary>
public static class WorkerGroup
{
    /// <summary>Runs <paramref name="count"/> instances of <paramref name="worker"/> (each started on the thread pool) and completes when all have.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static async Task RunAsync(int count, Func<CancellationToken, Task> worker, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentNullException.ThrowIfNull(worker);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var workers = new Task[count];
        for (var i = 0; i < workers.Length; i++)
        {
            workers[i] = RunOneAsync(worker, failed);
        }

        try
        {
            await Task.WhenAll(workers).ConfigureAwait(false);
        }
        catch
        {
            var first = workers.Select(w => w.Exception?.InnerException).FirstOrDefault(e => e is not null and not OperationCanceledException);
            if (first is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
            }

            throw;
        }
    }

    private static async Task RunOneAsync(Func<CancellationToken, Task> worker, CancellationTokenSource failed)
    {
        await Task.Yield(); // the workers run side by side
        try
        {
            await worker(failed.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException || !failed.IsCancellationRequested)
        {
            await failed.CancelAsync().ConfigureAwait(false);
            throw;
        }
    }
}
