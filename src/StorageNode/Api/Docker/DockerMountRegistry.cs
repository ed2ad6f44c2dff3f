using System.Collections.Immutable;
using Slab.Common;

namespace Slab.Api.Docker;

/// <summary>
/// The mount IDs Docker holds on each volume on this host (one per container using it), kept in
/// RUN/docker/mounts.json and replaced crash-safely (<see cref="DurableFile"/>) on every change,
/// so a restarted slabd knows which volumes Docker still has mounted and how often. The run
/// directory is a tmpfs in production: a host reboot forgets the IDs, as Docker forgets its
/// containers' mounts. Thread-safe; callers serialize changes to one volume themselves.
/// </summary>
public sealed class DockerMountRegistry
{
    private readonly string _file;
    private readonly Lock _lock = new();
    private ImmutableDictionary<string, ImmutableHashSet<string>> _ids;

    private DockerMountRegistry(string file, ImmutableDictionary<string, ImmutableHashSet<string>> ids)
    {
        _file = file;
        _ids = ids;
    }

    /// <summary>Reads <paramref name="file"/> (missing: no mounts); removes temp files a crash left next to it.</summary>
    /// <exception cref="SlabException">Internal: the file exists but cannot be read as mount IDs.</exception>
    public static DockerMountRegistry Load(string file)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(file))!;
        DurableFile.CreateDirectory(directory);
        DurableFile.RemoveLeftovers(directory);
        MountIdFile? content;
        try
        {
            content = DurableFile.ReadJson(file, DockerJson.Default.MountIdFile);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new SlabException(SlabErrorCode.Internal, $"{file} is not a Docker mount-ID file ({e.Message}); move it away to start without Docker's mount counts", e);
        }

        var ids = ImmutableDictionary.CreateBuilder<string, ImmutableHashSet<string>>(StringComparer.Ordinal);
        foreach (var (volume, volumeIds) in content?.Volumes ?? [])
        {
            if (volumeIds.Length > 0)
            {
                ids[volume] = [.. volumeIds];
            }
        }

        return new DockerMountRegistry(file, ids.ToImmutable());
    }

    /// <summary>Volumes with at least one mount ID, and their IDs.</summary>
    public ImmutableDictionary<string, ImmutableHashSet<string>> All => Volatile.Read(ref _ids);

    public ImmutableHashSet<string> IdsOf(string volume) => All.GetValueOrDefault(volume) ?? [];

    /// <summary>Replaces the IDs of <paramref name="volume"/> and makes the change durable before returning.</summary>
    /// <exception cref="IOException">The file could not be written; the registry is unchanged.</exception>
    public void Set(string volume, ImmutableHashSet<string> ids)
    {
        lock (_lock)
        {
            var next = ids.IsEmpty ? _ids.Remove(volume) : _ids.SetItem(volume, ids);
            var content = new MountIdFile
            {
                Volumes = next.ToDictionary(kv => kv.Key, kv => kv.Value.Order(StringComparer.Ordinal).ToArray(), StringComparer.Ordinal),
            };
            DurableFile.WriteJson(_file, content, DockerJson.Default.MountIdFile);
            Volatile.Write(ref _ids, next);
        }
    }
}
