using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Store;

public sealed partial class VolumeStore
{
    /// <summary>
    /// Rebuilds the index from the drives and removes what crashed mutations left: uncommitted
    /// creates, committed deletes, uncommitted snapshots, temp files.
    /// </summary>
    private void Recover()
    {
        var index = new Dictionary<string, VolumeRecord>(StringComparer.Ordinal);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var drive in _drives.Drives)
        {
            foreach (var directory in Directory.EnumerateDirectories(drive.VolumesDirectory))
            {
                var name = Path.GetFileName(directory);
                if (name.StartsWith(DeletingPrefix, StringComparison.Ordinal))
                {
                    LogRecovered(_logger, "finished an interrupted delete", name[DeletingPrefix.Length..]);
                    TryDeleteDirectory(directory);
                    continue;
                }

                DurableFile.RemoveLeftovers(directory);
                var volume = DurableFile.ReadJson(Path.Combine(directory, MetaFileName), StoreJsonContext.Default.VolumeRecord);
                if (volume is null || volume.Id != name)
                {
                    LogRecovered(_logger, "removed an uncommitted create", name);
                    TryDeleteDirectory(directory);
                    continue;
                }

                if (!names.Add(volume.Name))
                {
                    throw new SlabException(SlabErrorCode.Internal, $"two volumes on this node are named '{volume.Name}' (one is {volume.Id}); the store needs repair");
                }

                volume = volume with { DriveId = drive.Id };
                RemoveUncommittedSnapshots(directory, volume);
                index[volume.Id] = volume;
            }
        }

        lock (_indexLock)
        {
            _byId = index;
        }

        LogStoreOpened(_logger, index.Count, _drives.Drives.Count);
    }

    private void RemoveUncommittedSnapshots(string directory, VolumeRecord volume)
    {
        var snapshots = Path.Combine(directory, SnapshotsDirectoryName);
        Directory.CreateDirectory(snapshots);
        DurableFile.RemoveLeftovers(snapshots);
        foreach (var file in Directory.EnumerateFiles(snapshots))
        {
            var id = Path.GetFileName(file);
            if (!volume.Snapshots.Exists(s => s.Id == id))
            {
                LogRecovered(_logger, $"removed an uncommitted snapshot of '{volume.Name}'", id);
                File.Delete(file);
            }
        }

        foreach (var file in Directory.EnumerateFiles(directory))
        {
            var fileName = Path.GetFileName(file);
            if (fileName is not (MetaFileName or DataFileName))
            {
                LogRecovered(_logger, $"removed a leftover file of '{volume.Name}'", fileName);
                File.Delete(file);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Store opened: {Volumes} volumes on {Drives} drives")]
    private static partial void LogStoreOpened(ILogger logger, int volumes, int drives);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recovery {Action}: {What}")]
    private static partial void LogRecovered(ILogger logger, string action, string what);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} ({Id}) created, {SizeBytes} bytes, source {Source}")]
    private static partial void LogVolumeCreated(ILogger logger, string name, string id, long sizeBytes, string source);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} ({Id}) deleted")]
    private static partial void LogVolumeDeleted(ILogger logger, string name, string id);

    [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Name} restored from snapshot {Snapshot}")]
    private static partial void LogVolumeRestored(ILogger logger, string name, string snapshot);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Cannot remove {Directory}: {Reason}")]
    private static partial void LogCleanupFailed(ILogger logger, string directory, string reason);
}
