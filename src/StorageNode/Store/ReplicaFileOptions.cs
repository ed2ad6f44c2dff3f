namespace Slab.Store;

/// <summary>How <see cref="ReplicaFile.Open"/> opens a replica file.</summary>
public sealed record ReplicaFileOptions
{
    /// <summary>Read-write, O_DIRECT.</summary>
    public static ReplicaFileOptions Default { get; } = new();

    /// <summary>Read-only (snapshots): every mutating call fails with <see cref="Block.BlockError.ReadOnly"/>.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>
    /// Open with O_DIRECT (default): I/O bypasses the page cache. Turn off only for filesystems
    /// without O_DIRECT support (tmpfs in dev mode and tests); the I/O code is the same either way.
    /// </summary>
    public bool DirectIo { get; init; } = true;
}
