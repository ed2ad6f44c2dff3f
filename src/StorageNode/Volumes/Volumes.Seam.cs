using Slab.Block;

namespace Slab.Volumes;

// The volume layer: one VolumeController per open volume on the node where it is used. A controller
// is a block target over its replica targets (Block.IReplicaTarget: a LocalReplicaTarget for this
// node's replica, a Replication.RemoteReplicaTarget for another node's); it fans writes out, picks
// replicas for reads, drops a failing replica through the IReplicaSetAuthority (a Raft transaction in
// cluster mode) before it acknowledges a write without it, and drains writes for snapshots.
// VolumeManager owns the controllers and this node's open replicas (LocalReplica: file + epoch gate,
// shared by the controller here and the replica server), validates every request, and is the
// IExportCatalog that the NBD frontend serves. AttachExportCatalog is the private catalog for host
// attachments.

/// <summary>The part a replica plays in its volume's I/O, as the controller sees it.</summary>
public enum ReplicaMode
{
    /// <summary>Has every acknowledged write; writes are acknowledged only when it has them; reads may come from it.</summary>
    InSync,

    /// <summary>Being resynced: receives new writes behind the copy cursor; not counted for acknowledgement; never read.</summary>
    CatchingUp,

    /// <summary>Failed or unreachable: receives nothing; the controller records what it misses.</summary>
    Faulted,

    /// <summary>
    /// A new replica being copied in full (or one whose copy was interrupted): like
    /// <see cref="CatchingUp"/> while its copy runs. Handed to a controller at open it means "new,
    /// not copied yet": the controller treats it as faulted until it starts the rebuild.
    /// </summary>
    Rebuilding,
}

/// <summary>Gives each controller this node opens the observer of its latencies (the node's <c>/metrics</c>).</summary>
/// <remarks>Called when a volume opens, from any thread.</remarks>
public interface IVolumeIoObserverSource
{
    /// <summary>The observer for the volume's operations; null = none.</summary>
    IIoLatencyObserver? ObserverFor(string volumeId, string volumeName);
}

/// <summary>One replica handed to a controller: where it is, how to reach it, the part it plays.</summary>
/// <param name="NodeId">The node holding it (unique within a volume).</param>
/// <param name="NodeName">Names it in logs and errors.</param>
/// <param name="Target">Carries the controller's epoch on every request; the controller disposes it.</param>
/// <param name="Mode">Its mode when the controller opens.</param>
/// <param name="IsLocal">On this node: preferred for reads.</param>
/// <param name="Incarnation">Tells this replica apart from an earlier one on the same node (what the controller records about it, e.g. its dirty map, belongs to one incarnation).</param>
public sealed record ReplicaMember(string NodeId, string NodeName, IReplicaTarget Target, ReplicaMode Mode, bool IsLocal, string Incarnation = "");

/// <summary>What <see cref="IReplicaSetAuthority.ChangeReplicaAsync"/> achieved.</summary>
public enum ReplicaChangeOutcome
{
    /// <summary>The change is committed; the volume's epoch is now the returned one.</summary>
    Committed,

    /// <summary>The volume's epoch had moved on: another controller owns the volume; this one must stop.</summary>
    Fenced,

    /// <summary>The replica is no longer one of the volume's (removed by <c>ha-update</c>): the controller stops using it, nothing else changes.</summary>
    NotAMember,
}

/// <summary>The outcome of a replica change and the volume's epoch after it.</summary>
public readonly record struct ReplicaChangeResult(ReplicaChangeOutcome Outcome, long Epoch);

/// <summary>
/// Where a controller records changes of its replica set. In cluster mode a Raft transaction
/// (compare-and-set on the epoch); a controller without an authority cannot change its set, so a
/// failing replica fails the I/O.
/// </summary>
/// <remarks>Called from I/O and resync paths, at most one call per controller at a time.</remarks>
public interface IReplicaSetAuthority
{
    /// <summary>
    /// Records that the replica on <paramref name="nodeId"/> of <paramref name="volumeId"/> is now
    /// in <paramref name="mode"/>, if the volume's epoch still is <paramref name="expectedEpoch"/>.
    /// Leaving or entering the in-sync set raises the epoch (a drop before a write is acknowledged
    /// without the replica; a promotion after a resync); Faulted ↔ CatchingUp keeps it. Returns
    /// once the change is committed (or known refused).
    /// </summary>
    /// <exception cref="Common.SlabException">The change could not be committed (no quorum, timeout, refused): the I/O that needed it must fail.</exception>
    Task<ReplicaChangeResult> ChangeReplicaAsync(string volumeId, string nodeId, ReplicaMode mode, long expectedEpoch, string reason, CancellationToken cancellationToken);
}

/// <summary>
/// Tells whether the control plane has committed an epoch of a volume, so that this node's replica
/// may accept requests carrying it (cluster mode: the node's read copy of the Raft state, waited for
/// briefly). Without one, a replica accepts no epoch above the one it was opened with.
/// </summary>
public interface IEpochSource
{
    /// <summary>True when <paramref name="epoch"/> is committed for <paramref name="volumeId"/>; never throws except on cancellation.</summary>
    ValueTask<bool> IsCommittedAsync(string volumeId, long epoch, CancellationToken cancellationToken);
}

/// <summary>A resync or rebuild under way, as its controller sees it.</summary>
/// <param name="NodeId">The replica's node.</param>
/// <param name="NodeName">Its name.</param>
/// <param name="IsRebuild">A full copy (a new replica, or one whose misses are unknown) rather than a delta.</param>
/// <param name="RegionsTotal">Regions to copy when it began.</param>
/// <param name="RegionsLeft">Regions still to copy (writes meanwhile may add some back).</param>
/// <param name="RegionBytes">Bytes per region.</param>
/// <param name="BytesCopied">Data bytes copied so far (holes are not counted: they cost no transfer).</param>
/// <param name="Elapsed">Since it began.</param>
public readonly record struct ResyncProgress(
    string NodeId,
    string NodeName,
    bool IsRebuild,
    long RegionsTotal,
    long RegionsLeft,
    long RegionBytes,
    long BytesCopied,
    TimeSpan Elapsed)
{
    /// <summary>0..100.</summary>
    public double Percent => RegionsTotal == 0 ? 100 : Math.Clamp(100.0 * (RegionsTotal - RegionsLeft) / RegionsTotal, 0, 100);

    /// <summary>Data bytes copied per second so far.</summary>
    public double BytesPerSecond => Elapsed.TotalSeconds > 0 ? BytesCopied / Elapsed.TotalSeconds : 0;

    /// <summary>Time left at the rate so far (regions per second); null until a region is done.</summary>
    public TimeSpan? Remaining
    {
        get
        {
            var done = RegionsTotal - RegionsLeft;
            return done > 0 && Elapsed > TimeSpan.Zero ? Elapsed * ((double)RegionsLeft / done) : null;
        }
    }
}

/// <summary>What <see cref="VolumeController.CheckAsync"/> found.</summary>
/// <param name="ReplicasCompared">The in-sync replicas compared (names).</param>
/// <param name="BytesCompared">Bytes of the volume compared.</param>
/// <param name="DifferingRegions">Byte offsets of the regions (<see cref="DirtyRegionMap.DefaultRegionBytes"/> each) whose content differs between them, also with writes paused; at most 1000 listed.</param>
/// <param name="DifferingCount">How many regions differ.</param>
public sealed record ReplicaCheckReport(IReadOnlyList<string> ReplicasCompared, long BytesCompared, IReadOnlyList<long> DifferingRegions, long DifferingCount);
