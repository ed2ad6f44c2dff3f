namespace Slab.Store;

/// <summary>Settings of the node-local store.</summary>
public sealed record StoreOptions
{
    /// <summary>Node identity and the dev drive live here.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Drives are mounted under <c>RUN/drives/</c>.</summary>
    public required string RunDirectory { get; init; }

    /// <summary>Block devices or regular files standing in for them.</summary>
    public required IReadOnlyList<string> DrivePaths { get; init; }

    /// <summary>Erase a drive that carries a foreign filesystem or partition signature.</summary>
    public bool WipeDrives { get; init; }

    /// <summary>Provisioned bytes may reach capacity times this ratio (thin provisioning).</summary>
    public double OvercommitRatio { get; init; } = 4.0;

    /// <summary>Used share of the pool at which an alert is raised (0..1).</summary>
    public double NearFullFraction { get; init; } = 0.85;

    /// <summary>Used share of the pool at which new volumes, clones and grows are refused (0..1).</summary>
    public double FullFraction { get; init; } = 0.95;

    /// <summary>Largest volume in bytes (64 TiB).</summary>
    public long MaximumVolumeBytes { get; init; } = 64L << 40;

    /// <summary>Most snapshots one volume may have.</summary>
    public int MaximumSnapshotsPerVolume { get; init; } = 1024;

    /// <summary>Run the short IO benchmark that sets the pool's io priority when the pool is created.</summary>
    public bool MeasurePool { get; init; } = true;
}
