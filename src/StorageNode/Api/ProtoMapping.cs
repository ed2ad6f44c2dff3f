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
