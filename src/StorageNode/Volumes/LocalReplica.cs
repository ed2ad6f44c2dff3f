using System.Runtime.CompilerServices;
using Slab.Block;
using Slab.Store;

namespace Slab.Volumes;

/// <summary>
/// This node's open replica of one volume: the replica file and its fencing gate. One instance per
/// volume, shared by the controller on this node (through <see cref="LocalReplicaTarget"/>) and the
/// replica server (requests of controllers on other nodes), so both pass the same gate.
/// </summary>
/// <remarks>
/// The gate starts at the epoch persisted in the replica's record; every raise persists the new epoch
/// in that record (durable) before the new epoch is admitted, so after a crash the replica refuses
/// whatever it refused before. Thread-safe. Owned by <see cref="VolumeManager"/> (reference counted
/// by leases).
/// </remarks>
public sealed class LocalReplica
{
    private readonly Func<long, CancellationToken, Task> _persist;
    private readonly IEpochSource? _epochs;

    internal LocalReplica(string volumeId, ReplicaFile file, long epoch, Func<long, CancellationToken, Task> persist, IEpochSource? epochs)
    {
        VolumeId = volumeId;
        File = file;
        Gate = new EpochGate(epoch);
        _persist = persist;
        _epochs = epochs;
    }

    public string VolumeId { get; }

    public ReplicaFile File { get; }

    public EpochGate Gate { get; }

    /// <summary>Leases held (under the volume manager's open lock).</summary>
    internal int Leases { get; set; }

    /// <summary>
    /// A request carried <paramref name="epoch"/>, above the gate's: raises the gate when the control
    /// plane has committed that epoch. True when the gate now admits at least <paramref name="epoch"/>.
    /// </summary>
    public async ValueTask<bool> TryAdvanceAsync(long epoch, CancellationToken cancellationToken)
    {
        if (Gate.Epoch >= epoch)
        {
            return true;
        }

        if (_epochs is null || !await _epochs.IsCommittedAsync(VolumeId, epoch, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        try
        {
            await Gate.RaiseAsync(epoch, _persist, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is Common.SlabException or IOException)
        {
            return false; // not persisted: the new epoch stays unadmitted, older ones stay refused
        }

        return Gate.Epoch >= epoch;
    }

    /// <summary>Raises the gate to an epoch the control plane committed (fences older controllers now).</summary>
    public Task RaiseAsync(long epoch, CancellationToken cancellationToken) => Gate.RaiseAsync(epoch, _persist, cancellationToken);
}

/// <summary>
/// This node's replica as a controller's replica target: every request passes the replica's gate at
/// <see cref="Epoch"/> and holds its admission until the file call completes.
/// </summary>
/// <remarks>
/// Errors: a refused (older) epoch → <see cref="BlockError.Fenced"/>; a newer epoch that the control
/// plane has not committed → <see cref="BlockError.IOError"/>; the file's own errors as they are.
/// Steady state: no allocation beyond the file call's own.
/// </remarks>
public sealed class LocalReplicaTarget : IReplicaTarget
{
    private readonly LocalReplica _replica;
    private readonly IDisposable _lease;
    private long _epoch;

    internal LocalReplicaTarget(LocalReplica replica, IDisposable lease, long epoch)
    {
        _replica = replica;
        _lease = lease;
        _epoch = epoch;
    }

    public long Epoch
    {
        get => Volatile.Read(ref _epoch);
        set => Volatile.Write(ref _epoch, value);
    }

    public long Size => _replica.File.Size;

    public BlockTargetFeatures Features => _replica.File.Features;

    public BlockGeometry Geometry => _replica.File.Geometry;

    /// <summary>The volume manager grows the file itself (see <see cref="VolumeManager"/>); growing again to the same size is a no-op.</summary>
    public void Grow(long newSizeBytes)
    {
        if (newSizeBytes > _replica.File.Size)
        {
            _replica.File.Grow(newSizeBytes);
        }
    }

    public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        => Run(new ReadOperation(offset, destination), cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
        => Run(new WriteOperation(offset, source, flags), cancellationToken);

    public ValueTask FlushAsync(CancellationToken cancellationToken) => Run(default(FlushOperation), cancellationToken);

    public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken)
        => Run(new TrimOperation(offset, length), cancellationToken);

    public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken)
        => Run(new WriteZeroesOperation(offset, length, flags), cancellationToken);

    public async ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken)
    {
        await AdmitAsync(Epoch, cancellationToken).ConfigureAwait(false);
        try
        {
            return await _replica.File.GetExtentsAsync(offset, length, destination, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _replica.Gate.Exit();
        }
    }

    public void Dispose() => _lease.Dispose();

    private ValueTask Run<TOperation>(TOperation operation, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        var epoch = Epoch;
        if (_replica.Gate.TryEnter(epoch, out _) != EpochAdmission.Admitted)
        {
            return RunAfterAdmissionAsync(operation, epoch, cancellationToken);
        }

        ValueTask pending;
        try
        {
            pending = operation.Run(_replica.File, cancellationToken);
        }
        catch
        {
            _replica.Gate.Exit();
            throw;
        }

        if (!pending.IsCompleted)
        {
            return ExitAfterAsync(pending);
        }

        try
        {
            pending.GetAwaiter().GetResult();
            return ValueTask.CompletedTask;
        }
        finally
        {
            _replica.Gate.Exit();
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask ExitAfterAsync(ValueTask pending)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        finally
        {
            _replica.Gate.Exit();
        }
    }

    private async ValueTask RunAfterAdmissionAsync<TOperation>(TOperation operation, long epoch, CancellationToken cancellationToken)
        where TOperation : struct, IBlockOperation
    {
        await AdmitAsync(epoch, cancellationToken).ConfigureAwait(false);
        try
        {
            await operation.Run(_replica.File, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _replica.Gate.Exit();
        }
    }

    /// <summary>Enters the gate at <paramref name="epoch"/>, advancing it once if the epoch is committed; throws when refused.</summary>
    private async ValueTask AdmitAsync(long epoch, CancellationToken cancellationToken)
    {
        var (admission, current) = await _replica.Gate.EnterAsync(
            epoch, _replica, static (r, e, ct) => r.TryAdvanceAsync(e, ct), cancellationToken).ConfigureAwait(false);
        switch (admission)
        {
            case EpochAdmission.Admitted:
                return;
            case EpochAdmission.Stale:
                throw new BlockTargetException(
                    BlockError.Fenced,
                    $"volume {_replica.VolumeId}: the local replica is at epoch {current} and refuses epoch {epoch}; another controller owns the volume");
            default:
                throw new BlockTargetException(
                    BlockError.IOError,
                    $"volume {_replica.VolumeId}: the local replica has not accepted epoch {epoch} (it is at {current}; the cluster state has not committed it here)");
        }
    }
}
