using Slab.Block;

namespace Slab.Tests.Nbd;

/// <summary>An in-memory export catalog for NBD tests; counts leases so tests can check they are released.</summary>
internal sealed class TestExportCatalog : IExportCatalog
{
    private readonly Dictionary<string, (IBlockTarget Target, string Description)> _exports = [];
    private int _openLeases;
    private int _leasesOpened;

    public TestExportCatalog Add(string name, IBlockTarget target, string description = "")
    {
        _exports[name] = (target, description);
        return this;
    }

    /// <summary>Leases handed out and not yet disposed.</summary>
    public int OpenLeases => Volatile.Read(ref _openLeases);

    public int LeasesOpened => Volatile.Read(ref _leasesOpened);

    /// <summary>Completes when the open-lease count drops to zero after having been positive.</summary>
    public TaskCompletionSource AllLeasesReleased { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Called while a lease is disposed (before it counts as released).</summary>
    public Action? OnLeaseDisposing { get; set; }

    public IReadOnlyList<ExportDescription> ListExports()
        => _exports.Select(e => new ExportDescription(e.Key, e.Value.Description)).ToList();

    public ValueTask<IBlockTargetLease?> OpenExportAsync(string name, CancellationToken cancellationToken)
    {
        if (!_exports.TryGetValue(name, out var export))
        {
            return ValueTask.FromResult<IBlockTargetLease?>(null);
        }

        Interlocked.Increment(ref _openLeases);
        Interlocked.Increment(ref _leasesOpened);
        return ValueTask.FromResult<IBlockTargetLease?>(new Lease(this, export.Target));
    }

    private sealed class Lease(TestExportCatalog owner, IBlockTarget target) : IBlockTargetLease
    {
        private int _disposed;

        public IBlockTarget Target { get; } = target;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.OnLeaseDisposing?.Invoke();
                if (Interlocked.Decrement(ref owner._openLeases) == 0)
                {
                    owner.AllLeasesReleased.TrySetResult();
                }
            }

            return ValueTask.CompletedTask;
        }
    }
}
