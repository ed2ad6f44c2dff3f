using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Slab.Common;
using Slab.Store;

namespace Slab.Volumes;

/// <summary>What a volume-level caller needs to know about one volume.</summary>
public sealed record VolumeView(VolumeRecord Record, AttachmentInfo? Attachment, long UsedBytes, int OpenConnections);

/// <summary>
/// The node's volume service: validates requests, creates and changes volumes through the store,
/// opens volumes for I/O (<see cref="Block.IExportCatalog"/>), attaches them on this host.
/// </summary>
/// <remarks>
/// Thread-safe. Control-plane mutations of one volume are serialized by the store; operations that
/// need the volume closed (delete, restore) take it exclusively, so no export can open it meanwhile.
/// Every failure is a <see cref="SlabException"/> whose message names the volume and what to do.
/// </remarks>
public sealed partial class VolumeManager
{
    private readonly IVolumeStore _store;
    private readonly ILogger<VolumeManager> _logger;
    private readonly TimeProvider _time;

    public VolumeManager(IVolumeStore store, Host.IBlockDeviceAttacher attacher, Host.IFilesystemManager filesystems, VolumeManagerOptions options, TimeProvider time, ILogger<VolumeManager> logger)
    {
        _store = store;
        _attacher = attacher;
        _filesystems = filesystems;
        _options = options;
        _time = time;
        _logger = logger;
    }

    public IReadOnlyList<VolumeView> List(IReadOnlyDictionary<string, string>? labels = null)
    {
        var result = new List<VolumeView>();
        foreach (var volume in _store.ListVolumes())
        {
            if (labels is null || labels.All(l => volume.Labels.TryGetValue(l.Key, out var v) && v == l.Value))
            {
                result.Add(View(volume));
            }
        }

        return result;
    }

    public VolumeView Inspect(string nameOrId) => View(Require(nameOrId));

    public async Task<VolumeView> CreateAsync(string name, VolumeSpecification spec, CancellationToken cancellationToken)
    {
        VolumeNames.Validate(name, "volume");
        var draft = new VolumeRecord
        {
            Id = Guid.NewGuid().ToString("N"),
            Name = name,
            SizeBytes = ValidateSize(spec.SizeBytes),
            Repl = ValidateRepl(spec.Repl),
            Fs = ValidateFs(spec.Fs),
            IoPriority = spec.IoPriority ?? _store.GetPoolStatus().IoPriority,
            Labels = VolumeNames.ValidateLabels(spec.Labels),
            Limits = IoLimitSyntax.Validate(spec.Limits ?? IoLimits.None),
            Created = _time.GetUtcNow(),
            DriveId = "",
        };
        var volume = await _store.CreateVolumeAsync(draft, source: null, cancellationToken).ConfigureAwait(false);
        return View(volume);
    }

    public async Task<VolumeView> CloneAsync(string sourceReference, string name, IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken)
    {
        VolumeNames.Validate(name, "volume");
        var (volumeName, snapshotName) = VolumeNames.Split(sourceReference ?? "");
        var source = Require(volumeName);
        SnapshotRecord? snapshot = null;
        if (snapshotName is not null)
        {
            snapshot = RequireSnapshot(source, snapshotName);
        }

        var draft = source with
        {
            Id = Guid.NewGuid().ToString("N"),
            Name = name,
            SizeBytes = snapshot?.SizeBytes ?? source.SizeBytes,
            Labels = labels.Count > 0 ? VolumeNames.ValidateLabels(labels) : source.Labels,
            Created = _time.GetUtcNow(),
            Source = sourceReference,
            Snapshots = [],
            Epoch = 1,
        };

        // A clone of a live volume is taken at a write boundary, like a snapshot.
        IAsyncDisposable? pause = snapshot is null ? await PauseIfOpenAsync(source, cancellationToken).ConfigureAwait(false) : null;
        try
        {
            if (pause is not null)
            {
                await FlushIfOpenAsync(source, cancellationToken).ConfigureAwait(false);
            }

            var clone = await _store.CreateVolumeAsync(draft, new ReplicaSource(source, snapshot), cancellationToken).ConfigureAwait(false);
            return View(clone);
        }
        finally
        {
            if (pause is not null)
            {
                await pause.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Grows the volume (online when open or attached), changes labels and/or its QoS limits (online). Shrinking is refused.</summary>
    /// <param name="limits">New QoS limits; null keeps them.</param>
    public async Task<VolumeView> UpdateAsync(string nameOrId, long? newSizeBytes, IReadOnlyDictionary<string, string> labels, IoLimits? limits, CancellationToken cancellationToken)
    {
        var volume = Require(nameOrId);
        if (labels.Count > 0 || limits is not null)
        {
            volume = await _store.SaveVolumeAsync(
                volume with
                {
                    Labels = labels.Count > 0 ? VolumeNames.MergeLabels(volume.Labels, labels) : volume.Labels,
                    Limits = limits is null ? volume.Limits : IoLimitSyntax.Validate(limits),
                },
                cancellationToken).ConfigureAwait(false);
            if (limits is not null)
            {
                ApplyLimits(volume.Id, volume.Limits);
            }
        }

        if (newSizeBytes is { } requested)
        {
            var size = ValidateSize((ulong)requested);
            if (size < volume.SizeBytes)
            {
                throw new SlabException(SlabErrorCode.InvalidArgument, $"volume '{volume.Name}' is {Sizes.Human(volume.SizeBytes)}; shrinking to {Sizes.Human(size)} is not supported");
            }

            if (size > volume.SizeBytes)
            {
                volume = await GrowAsync(volume, size, cancellationToken).ConfigureAwait(false);
            }
        }

        return View(volume);
    }

    public async Task DeleteAsync(string nameOrId, CancellationToken cancellationToken)
    {
        var volume = Require(nameOrId);
        if (GetAttachment(volume.Id) is { } attachment)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"volume '{volume.Name}' is attached on {attachment.NodeName} at {attachment.DevicePath}; detach it first");
        }

        await using var exclusive = TakeExclusive(volume, "delete").ConfigureAwait(false);
        await _store.DeleteVolumeAsync(volume, cancellationToken).ConfigureAwait(false);
    }

    internal VolumeRecord Require(string nameOrId)
    {
        if (string.IsNullOrEmpty(nameOrId))
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "volume name is empty");
        }

        return _store.FindVolume(nameOrId)
               ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{nameOrId}' not found");
    }

    internal static SnapshotRecord RequireSnapshot(VolumeRecord volume, string nameOrId)
        => string.IsNullOrEmpty(nameOrId)
            ? throw new SlabException(SlabErrorCode.InvalidArgument, "snapshot name is empty")
            : volume.FindSnapshot(nameOrId)
              ?? throw new SlabException(SlabErrorCode.NotFound, $"volume '{volume.Name}' has no snapshot '{nameOrId}'");

    private VolumeView View(VolumeRecord volume)
        => new(volume, GetAttachment(volume.Id), _store.AllocatedBytes(volume), OpenConnectionCount(volume.Id));

    private long ValidateSize(ulong sizeBytes)
    {
        if (sizeBytes == 0)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, "volume size must be greater than 0");
        }

        if (sizeBytes > (ulong)_store.Options.MaximumVolumeBytes)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"volume size {Sizes.Human((long)Math.Min(sizeBytes, long.MaxValue))} is over the limit of {Sizes.Human(_store.Options.MaximumVolumeBytes)}");
        }

        // Sizes are whole 4 KiB blocks.
        return (long)((sizeBytes + 4095) & ~4095UL);
    }

    private int ValidateRepl(uint repl) => repl switch
    {
        0 or 1 => 1,
        2 or 3 when ClusterVolumes is not null => (int)repl,
        2 or 3 => throw new SlabException(
            SlabErrorCode.FailedPrecondition,
            $"--repl {repl} needs a cluster: replicas live on distinct nodes, and this slabd runs alone (start the nodes with --cluster-id; see scripts/cluster); use --repl 1 here"),
        _ => throw new SlabException(SlabErrorCode.InvalidArgument, $"repl must be 1, 2 or 3 (got {repl})"),
    };

    private static string ValidateFs(string? fs) => fs switch
    {
        null or "" => "ext4",
        "ext4" or "xfs" or "none" => fs,
        _ => throw new SlabException(SlabErrorCode.InvalidArgument, $"unsupported filesystem '{fs}': use ext4, xfs or none"),
    };
}

/// <summary>A create request after parsing; sizes in bytes.</summary>
public sealed record VolumeSpecification(
    ulong SizeBytes,
    uint Repl,
    string? Fs,
    IoPriority? IoPriority,
    IReadOnlyDictionary<string, string>? Labels,
    IoLimits? Limits = null);

/// <summary>Settings of the volume layer.</summary>
public sealed record VolumeManagerOptions
{
    /// <summary>This node's name, shown in attachments.</summary>
    public required string NodeName { get; init; }

    public required string NodeId { get; init; }

    /// <summary>The private NBD socket that host attachments connect to.</summary>
    public required string AttachSocketPath { get; init; }

    /// <summary>Size the attach exports advertise (see <see cref="AttachExportCatalog"/>), bytes.</summary>
    public long AttachCeilingBytes { get; init; } = 64L << 40;

    /// <summary>
    /// Whether attachments outlive this daemon (<c>--keep-attachments</c>; the host layer attaches
    /// through a reconnecting relay): shutdown leaves them attached and mounted, and the next start
    /// adopts them (<see cref="VolumeManager.AdoptSurvivorsAsync"/>). False: shutdown detaches everything.
    /// </summary>
    public bool KeepAttachments { get; init; }
}
