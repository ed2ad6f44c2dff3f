using Slab.Store;
using Slab.Volumes;
using V1 = Slab.Api.V1;

namespace Slab.Api;

/// <summary>Volume-layer records to API messages.</summary>
internal static class ProtoMapping
{
    public static V1.Volume ToProto(VolumeView view, LocalNodeIdentity node)
    {
        var record = view.Record;
        var volume = new V1.Volume
        {
            Id = record.Id,
            Name = record.Name,
            Spec = new V1.VolumeSpec
            {
                SizeBytes = (ulong)record.SizeBytes,
                Repl = (uint)record.Repl,
                Fs = record.Fs,
                IoPriority = ToProto(record.IoPriority),
                Limits = ToProto(record.Limits),
            },
            State = "up",
            UsedBytes = (ulong)view.UsedBytes,
            CreatedUnixMs = record.Created.ToUnixTimeMilliseconds(),
            Source = record.Source ?? "",
            Epoch = (ulong)record.Epoch,
            SnapshotCount = (uint)record.Snapshots.Count,
            Formatted = record.Formatted,
        };
        volume.Spec.Labels.Add(record.Labels);
        volume.Replicas.Add(new V1.Replica
        {
            NodeId = node.NodeId,
            NodeName = node.NodeName,
            PoolId = node.PoolId,
            DriveId = record.DriveId,
            State = "in-sync",
            NodeOnline = true,
        });
        if (view.Attachment is { } attachment)
        {
            volume.Attachment = ToProto(attachment);
        }

        return volume;
    }

    public static V1.IoLimits ToProto(Common.IoLimits limits) => new()
    {
        MaxReadIops = (ulong)limits.ReadIops,
        MaxWriteIops = (ulong)limits.WriteIops,
        MaxReadBytesPerSecond = (ulong)limits.ReadBytesPerSecond,
        MaxWriteBytesPerSecond = (ulong)limits.WriteBytesPerSecond,
    };

    /// <summary>
    /// The limits a request carries over <paramref name="current"/> (a field left unset keeps its
    /// current value; none = all 0), validated; null when the request carries none.
    /// </summary>
    /// <exception cref="Common.SlabException">InvalidArgument: a limit is out of range.</exception>
    public static Common.IoLimits? FromProto(V1.IoLimits? limits, Common.IoLimits? current = null)
    {
        if (limits is null)
        {
            return null;
        }

        current ??= Common.IoLimits.None;
        return Common.IoLimitSyntax.Validate(new Common.IoLimits
        {
            ReadIops = limits.HasMaxReadIops ? Clamp(limits.MaxReadIops) : current.ReadIops,
            WriteIops = limits.HasMaxWriteIops ? Clamp(limits.MaxWriteIops) : current.WriteIops,
            ReadBytesPerSecond = limits.HasMaxReadBytesPerSecond ? Clamp(limits.MaxReadBytesPerSecond) : current.ReadBytesPerSecond,
            WriteBytesPerSecond = limits.HasMaxWriteBytesPerSecond ? Clamp(limits.MaxWriteBytesPerSecond) : current.WriteBytesPerSecond,
        });
    }

    /// <summary>The I/O counters of <paramref name="controller"/> (open on <paramref name="nodeId"/>), or inactive zeros when it is null.</summary>
    public static V1.VolumeStats ToProto(string volumeId, string volumeName, VolumeController? controller, string nodeId, string nodeName, Common.IoLimits limits, long usedBytes, DateTimeOffset now)
    {
        var stats = new V1.VolumeStats
        {
            VolumeId = volumeId,
            VolumeName = volumeName,
            UsedBytes = (ulong)Math.Max(0, usedBytes),
            Limits = ToProto(controller?.Limits ?? limits),
            SampledUnixMs = now.ToUnixTimeMilliseconds(),
            Reads = new V1.IoTotals(),
            Writes = new V1.IoTotals(),
            Flushes = new V1.IoTotals(),
            Discards = new V1.IoTotals(),
        };
        if (controller is null)
        {
            return stats;
        }

        var snapshot = controller.Stats.Snapshot();
        stats.Active = true;
        stats.NodeId = nodeId;
        stats.NodeName = nodeName;
        stats.SampledUnixMs = snapshot.SampledAt.ToUnixTimeMilliseconds();
        stats.SinceUnixMs = snapshot.Since.ToUnixTimeMilliseconds();
        stats.Reads = ToProto(snapshot.Reads);
        stats.Writes = ToProto(snapshot.Writes);
        stats.Flushes = ToProto(snapshot.Flushes);
        stats.Discards = ToProto(snapshot.Discards);
        stats.InFlight = (ulong)Math.Max(0, snapshot.InFlight);
        stats.ThrottledUs = Microseconds(snapshot.Throttled);
        return stats;
    }

    private static V1.IoTotals ToProto(IoTotals totals) => new()
    {
        Operations = (ulong)totals.Operations,
        Bytes = (ulong)totals.Bytes,
        Errors = (ulong)totals.Errors,
        TotalLatencyUs = Microseconds(totals.TotalLatency),
    };

    private static ulong Microseconds(TimeSpan span) => (ulong)Math.Max(0, span.Ticks / TimeSpan.TicksPerMicrosecond);

    private static long Clamp(ulong value) => value > long.MaxValue ? long.MaxValue : (long)value;

    public static V1.ResyncProgress ToProto(ResyncProgress progress) => new()
    {
        Rebuild = progress.IsRebuild,
        Percent = progress.Percent,
        BytesCopied = (ulong)progress.BytesCopied,
        BytesPerSecond = progress.BytesPerSecond,
        EtaSeconds = progress.Remaining?.TotalSeconds ?? 0,
        RegionsLeft = (ulong)progress.RegionsLeft,
        RegionsTotal = (ulong)progress.RegionsTotal,
        RegionBytes = (uint)progress.RegionBytes,
    };

    public static V1.CheckVolumeResponse ToProto(ReplicaCheckReport report, string nodeName)
    {
        var response = new V1.CheckVolumeResponse
        {
            BytesCompared = (ulong)report.BytesCompared,
            DifferingRegions = (ulong)report.DifferingCount,
            RegionBytes = DirtyRegionMap.DefaultRegionBytes,
            NodeName = nodeName,
        };
        response.Replicas.Add(report.ReplicasCompared);
        response.DifferingOffsets.Add(report.DifferingRegions.Select(o => (ulong)o));
        return response;
    }

    public static V1.Attachment ToProto(AttachmentInfo attachment)
    {
        var message = new V1.Attachment
        {
            NodeId = attachment.NodeId,
            NodeName = attachment.NodeName,
            DevicePath = attachment.DevicePath,
            Method = attachment.Method,
            AttachedUnixMs = attachment.Attached.ToUnixTimeMilliseconds(),
        };
        message.MountPaths.Add(attachment.MountPaths);
        return message;
    }

    public static V1.Snapshot ToProto(VolumeRecord volume, SnapshotRecord snapshot)
        => Snapshot(snapshot.Id, snapshot.Name, volume.Id, volume.Name, snapshot.SizeBytes, snapshot.Created);

    /// <summary>A snapshot message (single node and cluster alike; a cluster adds the nodes holding it).</summary>
    public static V1.Snapshot Snapshot(string id, string name, string volumeId, string volumeName, long sizeBytes, DateTimeOffset created) => new()
    {
        Id = id,
        Name = name,
        VolumeId = volumeId,
        VolumeName = volumeName,
        SizeBytes = (ulong)sizeBytes,
        CreatedUnixMs = created.ToUnixTimeMilliseconds(),
    };

    public static V1.Pool ToProto(PoolStatus pool)
    {
        var message = new V1.Pool
        {
            Id = pool.Id,
            IoPriority = ToProto(pool.IoPriority),
            TotalBytes = (ulong)pool.TotalBytes,
            UsedBytes = (ulong)pool.UsedBytes,
            ProvisionedBytes = (ulong)pool.ProvisionedBytes,
            OvercommitRatio = pool.OvercommitRatio,
            MeasuredIops = pool.MeasuredIops,
            MeasuredMbps = pool.MeasuredMegabytesPerSecond,
        };
        foreach (var drive in pool.Drives)
        {
            message.Drives.Add(new V1.Drive
            {
                Id = drive.Id,
                Path = drive.Path,
                MountPath = drive.MountPath,
                TotalBytes = (ulong)drive.TotalBytes,
                UsedBytes = (ulong)drive.UsedBytes,
                Status = drive.Online ? "online" : "offline",
            });
        }

        return message;
    }

    public static V1.IoPriority ToProto(IoPriority priority) => priority switch
    {
        IoPriority.High => V1.IoPriority.High,
        IoPriority.Low => V1.IoPriority.Low,
        _ => V1.IoPriority.Medium,
    };

    public static IoPriority? FromProto(V1.IoPriority priority) => priority switch
    {
        V1.IoPriority.High => IoPriority.High,
        V1.IoPriority.Medium => IoPriority.Medium,
        V1.IoPriority.Low => IoPriority.Low,
        V1.IoPriority.Unspecified => null,
        _ => throw new Common.SlabException(Common.SlabErrorCode.InvalidArgument, $"unknown io priority {(int)priority}: use high, medium or low"),
    };
}

/// <summary>This node as the API reports it.</summary>
public sealed record LocalNodeIdentity(string NodeId, string NodeName, string PoolId, string ClusterId, string Version, string NbdSocket, string NbdTcp);
