using System.Buffers;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Volumes;

/// <summary>
/// The block target of one open volume on the node where it is used: the one owner of the volume's
/// I/O. It holds the replica set (each replica with its <see cref="ReplicaMode"/>) and the epoch,
/// fans writes out, picks replicas for reads, drops failing replicas, and can pause writes at a write
/// boundary (for crash-consistent snapshots).
/// </summary>
/// <remarks>
/// <para>Acknowledgement (RPO 0): a write, trim, write-zeroes or flush completes successfully only
/// when every replica that is in sync at that moment has done it. A replica that fails one is first
/// taken out of the in-sync set through the <see cref="IReplicaSetAuthority"/> (a Raft transaction
/// that raises the epoch); only then is the operation acknowledged without it. If that cannot be
/// committed (no quorum) the operation fails, and so does it when the last in-sync replica fails.
/// Every replica request carries the controller's epoch; a replica that answers
/// <see cref="BlockError.Fenced"/> holds a newer epoch this controller did not make, so another
/// controller owns the volume and every later request fails the same way.</para>
/// <para>Reads go to the local in-sync replica when there is one, else round-robin over the in-sync
/// replicas; a replica that fails a read is dropped the same way and the read is tried on another.</para>
/// <para>Threading: all block operations may run concurrently. The replica set is an immutable view
/// swapped atomically; changes of it are serialized. <see cref="PauseWritesAsync"/> waits until no
/// write is in flight and holds new ones back until the returned pause is disposed; reads and flushes
/// continue. Steady state with one replica allocates nothing; with several, the per-request fan-out
/// rents its task array from a pool.</para>
/// </remarks>
public sealed partial class VolumeController : IBlockTarget, IDisposable
{
    private readonly IReplicaSetAuthority? _authority;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _changeLock = new(1, 1);
    private ReplicaSetView _view;
    private long _size;
    private int _readCursor;

    /// <summary>Opens a controller over <paramref name="members"/> at <paramref name="epoch"/>.</summary>
    /// <param name="volumeId">The volume's id (logs, authority calls).</param>
    /// <param name="volumeName">The volume's name (errors).</param>
    /// <param name="sizeBytes">The volume's size.</param>
    /// <param name="epoch">The volume's current epoch; set on every member's target.</param>
    /// <param name="members">At least one; node ids distinct; at least one in sync. The controller owns (disposes) their targets.</param>
    /// <param name="authority">Records replica faults; null when the set cannot change (a single node), so a failing replica fails the I/O.</param>
    /// <param name="logger">Destination of replica-set changes.</param>
    /// <param name="dirtyMaps">Where the maps of faulted replicas are kept on this node; null keeps them in memory only (a resync after a restart then copies everything).</param>
    /// <param name="copyThrottle">The node's limit on resync and rebuild copies; null copies as fast as the replicas go.</param>
    /// <param name="io">Clock, QoS limits and latency observer of the volume's I/O; null = system clock, unlimited.</param>
    public VolumeController(
        string volumeId,
        string volumeName,
        long sizeBytes,
        long epoch,
        IReadOnlyList<ReplicaMember> members,
        IReplicaSetAuthority? authority,
        ILogger logger,
        DirtyMapStore? dirtyMaps = null,
        CopyThrottle? copyThrottle = null,
        VolumeIoSettings? io = null)
    {
        ArgumentNullException.ThrowIfNull(members);
        if (members.Count == 0 || members.Count > ReplicaSetView.MaxMembers)
        {
            throw new ArgumentOutOfRangeException(nameof(members), $"a controller takes 1..{ReplicaSetView.MaxMembers} replicas");
        }

        if (members.Select(m => m.NodeId).Distinct(StringComparer.Ordinal).Count() != members.Count)
        {
            throw new ArgumentException("replica node ids must be distinct", nameof(members));
        }

        if (!members.Any(m => m.Mode == ReplicaMode.InSync))
        {
            throw new ArgumentException("at least one replica must be in sync", nameof(members));
        }

        VolumeId = volumeId;
        VolumeName = volumeName;
        _size = sizeBytes;
        _authority = authority;
        _logger = logger;
        _dirtyMaps = dirtyMaps;
        _copyThrottle = copyThrottle;
        io ??= VolumeIoSettings.Default;
        _time = io.Time;
        _qosBurst = io.QosBurst;
        Stats = new VolumeIoStats(io.Time, io.LatencyObserver);
        SetLimits(io.Limits);
        foreach (var member in members)
        {
            member.Target.Epoch = epoch;
        }

        _view = new ReplicaSetView(
            epoch,
            [.. members.Select(m => new ReplicaSlot(m.NodeId, m.NodeName, m.Target, m.IsLocal, m.Incarnation, needsRebuild: m.Mode == ReplicaMode.Rebuilding))],
            [.. members.Select(m => m.Mode is ReplicaMode.InSync ? ReplicaMode.InSync : ReplicaMode.Faulted)]);
        var features = BlockTargetFeatures.Flush | BlockTargetFeatures.ForceUnitAccess | BlockTargetFeatures.Trim | BlockTargetFeatures.WriteZeroes
            | BlockTargetFeatures.BlockStatus | BlockTargetFeatures.MultiConnection | BlockTargetFeatures.ReadOnly;
        var maximum = int.MaxValue;
        foreach (var member in members)
        {
            features &= member.Target.Features | BlockTargetFeatures.ReadOnly;
            if ((member.Target.Features & BlockTargetFeatures.ReadOnly) == 0)
            {
                features &= ~BlockTargetFeatures.ReadOnly;
            }

            maximum = Math.Min(maximum, member.Target.Geometry.Maximum);
        }

        Features = features;
        var first = members[0].Target.Geometry;
        Geometry = new BlockGeometry(first.Minimum, first.Preferred, maximum);
        InitializeMaps(members);
    }

    public string VolumeId { get; }

    public string VolumeName { get; }

    /// <summary>The epoch this controller's requests carry now (raised when it drops a replica).</summary>
    public long Epoch => Volatile.Read(ref _view).Epoch;

    /// <summary>The replicas and their modes now.</summary>
    public IReadOnlyList<(string NodeId, string NodeName, ReplicaMode Mode)> Replicas
    {
        get
        {
            var view = Volatile.Read(ref _view);
            var result = new (string, string, ReplicaMode)[view.Slots.Length];
            for (var i = 0; i < result.Length; i++)
            {
                result[i] = (view.Slots[i].NodeId, view.Slots[i].NodeName, view.Modes[i]);
            }

            return result;
        }
    }

    public long Size => Volatile.Read(ref _size);

    public BlockTargetFeatures Features { get; }

    public BlockGeometry Geometry { get; }

    private ValueTask ReadCoreAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var view = Volatile.Read(ref _view);
        if (view.Slots.Length == 1)
        {
            return view.Slots[0].Target.ReadAsync(offset, destination, cancellationToken);
        }

        return ReadFromSetAsync(new ReadOperation(offset, destination), cancellationToken);
    }


    public async ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        while (true)
        {
            var view = Volatile.Read(ref _view);
            var index = PickReadReplica(view);
            try
            {
                return await view.Slots[index].Target.GetExtentsAsync(offset, length, destination, cancellationToken).ConfigureAwait(false);
            }
            catch (BlockTargetException e) when (view.Slots.Length > 1 && TriesAnotherReplica(e.Error))
            {
                await HandleFailuresAsync(view, 1 << index, e, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private ValueTask WriteCoreAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
    {
        if (!TryEnterWrite())
        {
            return AfterPauseAsync(new WriteOperation(offset, source, flags), cancellationToken);
        }

        try
        {
            var pending = Dispatch(new WriteOperation(offset, source, flags), cancellationToken);
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

    /// <summary>Widens every replica to <paramref name="newSizeBytes"/> (the local file grows; remote bounds widen); visible to I/O at once.</summary>
    public void Grow(long newSizeBytes)
    {
        foreach (var slot in Volatile.Read(ref _view).Slots)
        {
            slot.Target.Grow(newSizeBytes);
        }

        Common.AtomicMax.Raise(ref _size, newSizeBytes);
    }

    public void Dispose()
    {
        Volatile.Read(ref _resyncStop)?.Cancel();
        try
        {
            _resyncTask.Wait(TimeSpan.FromSeconds(10));
        }
        catch (AggregateException)
        {
            // the resync logged its own end
        }

        foreach (var slot in Volatile.Read(ref _view).Slots)
        {
            slot.Target.Dispose();
        }

        _pauseLock.Dispose();
        _changeLock.Dispose();
    }

    /// <summary>Runs an operation on the replica set: directly on a lone replica, else fanned out to every writable replica.</summary>
    private ValueTask Dispatch<TOperation>(TOperation operation, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        var view = Volatile.Read(ref _view);
        return view.Slots.Length == 1
            ? operation.Run(view.Slots[0].Target, cancellationToken)
            : FanOutAsync(operation, cancellationToken);
    }

    /// <summary>
    /// Sends the operation to every in-sync and catching-up replica and completes when all of them
    /// answered; replicas that failed are handled (dropped, or the operation fails) before it completes.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask FanOutAsync<TOperation>(TOperation operation, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        while (true)
        {
            var view = Volatile.Read(ref _view);
            var slots = view.Slots;
            var resync = operation.IsWrite ? Volatile.Read(ref _resync) : null;
            var toCatchingUp = resync?.Enter(operation.Offset, operation.Length) ?? false;
            try
            {
                var pending = ArrayPool<ValueTask>.Shared.Rent(slots.Length);
                var sent = 0;
                var failed = 0;
                BlockTargetException? failure = null;
                try
                {
                    Array.Clear(pending, 0, slots.Length);
                    foreach (var i in view.SendOrder)
                    {
                        var mode = view.Modes[i];
                        if (mode == ReplicaMode.Faulted || (IsCopyTarget(mode) && operation.IsWrite && !(toCatchingUp && resync!.Slot == i)))
                        {
                            continue; // a write it misses is marked in its map below
                        }

                        sent |= 1 << i;
                        try
                        {
#pragma warning disable CA2012 // each value task is awaited exactly once, in the loop below
                            pending[i] = operation.Run(slots[i].Target, cancellationToken);
#pragma warning restore CA2012
                        }
                        catch (BlockTargetException e)
                        {
                            failed |= 1 << i;
                            failure ??= e;
                        }
                    }

                    for (var i = 0; i < slots.Length; i++)
                    {
                        try
                        {
                            await pending[i].ConfigureAwait(false);
                        }
                        catch (BlockTargetException e)
                        {
                            failed |= 1 << i;
                            failure = Worse(failure, e);
                        }
                    }
                }
                finally
                {
                    Array.Clear(pending, 0, slots.Length);
                    ArrayPool<ValueTask>.Shared.Return(pending);
                }

                if (failed != 0 && await HandleFailuresAsync(view, failed, failure!, cancellationToken).ConfigureAwait(false))
                {
                    continue; // the epoch moved under the request (our own drop of another replica): send it again at the new one
                }

                // Every in-sync replica left has it; what the others missed is recorded before it is acknowledged.
                if (operation.IsWrite && Volatile.Read(ref _maps).Length != 0)
                {
                    await MarkMissedAsync(sent & ~failed, operation.Offset, operation.Length, cancellationToken).ConfigureAwait(false);
                }

                return;
            }
            finally
            {
                resync?.Exit(operation.Offset, operation.Length);
            }
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ReadFromSetAsync(ReadOperation operation, CancellationToken cancellationToken)
    {
        while (true)
        {
            var view = Volatile.Read(ref _view);
            var index = PickReadReplica(view);
            try
            {
                await operation.Run(view.Slots[index].Target, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (BlockTargetException e) when (TriesAnotherReplica(e.Error))
            {
                await HandleFailuresAsync(view, 1 << index, e, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The local in-sync replica when there is one, else the next in-sync replica round-robin.</summary>
    private int PickReadReplica(ReplicaSetView view)
    {
        var count = 0;
        for (var i = 0; i < view.Slots.Length; i++)
        {
            if (view.Modes[i] == ReplicaMode.InSync)
            {
                if (view.Slots[i].IsLocal)
                {
                    return i;
                }

                count++;
            }
        }

        var n = (int)((uint)Interlocked.Increment(ref _readCursor) % (uint)count);
        for (var i = 0; i < view.Slots.Length; i++)
        {
            if (view.Modes[i] == ReplicaMode.InSync && n-- == 0)
            {
                return i;
            }
        }

        return 0; // unreachable: a view always has an in-sync replica
    }

    /// <summary>A replica a resync copies into: it gets writes behind the copy cursor, is not counted for acknowledgement and is never read.</summary>
    private static bool IsCopyTarget(ReplicaMode mode) => mode is ReplicaMode.CatchingUp or ReplicaMode.Rebuilding;

    /// <summary>Errors that mean the replica could not do a well-formed request (as opposed to a bad request, which fails on every replica alike).</summary>
    private static bool FaultsReplica(BlockError error) => error is BlockError.IOError or BlockError.NoSpace or BlockError.Closed;

    /// <summary>A read that failed so is handled (the replica dropped, or the epoch checked) and tried again; others fail the read.</summary>
    private static bool TriesAnotherReplica(BlockError error) => FaultsReplica(error) || error == BlockError.Fenced;

    private static BlockTargetException Worse(BlockTargetException? first, BlockTargetException next)
        => first is null || (next.Error == BlockError.Fenced && first.Error != BlockError.Fenced) ? next : first;

    /// <summary>An immutable replica set: slots never change; modes and the epoch change by a new view.</summary>
    private sealed class ReplicaSetView(long epoch, ReplicaSlot[] slots, ReplicaMode[] modes)
    {
        /// <summary>Replicas a controller takes: 3 plus one being rebuilt as a replacement.</summary>
        public const int MaxMembers = 4;

        public long Epoch { get; } = epoch;

        public ReplicaSlot[] Slots { get; } = slots;

        public ReplicaMode[] Modes { get; } = modes;

        /// <summary>
        /// The order an operation goes out to the replicas: remote ones first, this node's last. A
        /// remote request only queues a frame on a socket, while the local replica's file I/O runs on
        /// the calling thread until it is done; sent the other way round, every remote replica would
        /// start only after the local write, and a write's latency would be the sum of both.
        /// </summary>
        public int[] SendOrder { get; } = [.. Enumerable.Range(0, slots.Length).OrderBy(i => slots[i].IsLocal ? 1 : 0)];

        public int InSyncCount => Modes.Count(m => m == ReplicaMode.InSync);

        public ReplicaSetView With(int index, ReplicaMode mode, long epoch)
        {
            var modes = (ReplicaMode[])Modes.Clone();
            modes[index] = mode;
            return new ReplicaSetView(epoch, Slots, modes);
        }
    }

    /// <summary>One replica of the set; views share slots, so a slot is found again by reference.</summary>
    private sealed class ReplicaSlot(string nodeId, string nodeName, IReplicaTarget target, bool isLocal, string incarnation, bool needsRebuild)
    {
        public string NodeId { get; } = nodeId;

        public string NodeName { get; } = nodeName;

        public IReplicaTarget Target { get; } = target;

        public bool IsLocal { get; } = isLocal;

        /// <summary>Names this replica's dirty map: the node, and the incarnation when it has one.</summary>
        public string MapKey { get; } = incarnation.Length == 0 ? nodeId : $"{nodeId}-{incarnation}";

        /// <summary>Placed new and not yet in sync: its resync is a rebuild. Changed under the change lock.</summary>
        public bool NeedsRebuild { get; set; } = needsRebuild;
    }
}
