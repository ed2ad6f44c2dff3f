namespace Slab.Common;

/// <summary>The rules a group snapshot's volume list follows, in single-node and cluster mode alike.</summary>
public static class GroupSnapshotRules
{
    /// <summary>The most volumes one group snapshot may take.</summary>
    public const int MaxVolumes = 64;

    /// <summary>INVALID_ARGUMENT unless 1 to <see cref="MaxVolumes"/> volumes are named.</summary>
    public static void CheckCount(int count)
    {
        if (count is 0 or > MaxVolumes)
        {
            throw new SlabException(SlabErrorCode.InvalidArgument, $"a group snapshot takes 1 to {MaxVolumes} volumes, not {count}");
        }
    }

    /// <summary>
    /// INVALID_ARGUMENT when a volume is named twice (by id), ALREADY_EXISTS when one already has a
    /// snapshot named <paramref name="snapshotName"/> (<paramref name="hasSnapshotNamed"/>).
    /// </summary>
    public static void CheckMembers<T>(IReadOnlyList<T> volumes, string snapshotName, Func<T, string> idOf, Func<T, string> nameOf, Func<T, string, bool> hasSnapshotNamed)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var volume in volumes)
        {
            if (!seen.Add(idOf(volume)))
            {
                throw new SlabException(SlabErrorCode.InvalidArgument, $"volume '{nameOf(volume)}' is named twice in the group");
            }
        }

        foreach (var volume in volumes)
        {
            if (hasSnapshotNamed(volume, snapshotName))
            {
                throw new SlabException(SlabErrorCode.AlreadyExists, $"volume '{nameOf(volume)}' already has snapshot '{snapshotName}'; choose another name for the group");
            }
        }
    }
}
