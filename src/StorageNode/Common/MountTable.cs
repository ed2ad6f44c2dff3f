using System.Globalization;
using System.Text;

namespace Slab.Common;

/// <summary>One line of <c>/proc/self/mountinfo</c>.</summary>
internal sealed record MountEntry(int MountId, int ParentId, int Major, int Minor, string Root, string MountPoint, string FilesystemType, string Source);

/// <summary>Reads this process's mount table.</summary>
internal static class MountTable
{
    /// <summary>True when <paramref name="path"/> is a mount point now.</summary>
    public static bool IsMountPoint(string path) => At(Normalize(path)) is not null;

    /// <summary>All mounts in slabd's mount namespace, in mount order.</summary>
    public static IReadOnlyList<MountEntry> Read()
    {
        var entries = new List<MountEntry>();
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var entry = Parse(line);
            if (entry is not null)
            {
                entries.Add(entry);
            }
        }

        return entries;
    }

    /// <summary>Mount points of the block device <paramref name="major"/>:<paramref name="minor"/>, deepest first (the order to unmount them).</summary>
    public static IReadOnlyList<string> MountPointsOf(int major, int minor) =>
        Read().Where(m => m.Major == major && m.Minor == minor)
            .Select(m => m.MountPoint)
            .Distinct(StringComparer.Ordinal)
            .OrderByDescending(p => p.Length)
            .ToList();

    /// <summary>The mount at exactly <paramref name="mountPoint"/> (the topmost when stacked), or null.</summary>
    public static MountEntry? At(string mountPoint)
    {
        var normalized = Normalize(mountPoint);
        return Read().LastOrDefault(m => string.Equals(m.MountPoint, normalized, StringComparison.Ordinal));
    }

    /// <summary>Absolute path without a trailing slash, symlinks in the parent resolved when it exists.</summary>
    public static string Normalize(string path)
    {
        var full = Path.GetFullPath(path);
        if (full.Length > 1)
        {
            full = full.TrimEnd('/');
        }

        return full;
    }

    internal static MountEntry? Parse(string line)
    {
        // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
        var fields = line.Split(' ');
        var separator = Array.IndexOf(fields, "-");
        if (fields.Length < 10 || separator < 6 || separator + 2 >= fields.Length)
        {
            return null;
        }

        var numbers = fields[2].Split(':');
        if (numbers.Length != 2
            || !int.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out var id)
            || !int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent)
            || !int.TryParse(numbers[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            || !int.TryParse(numbers[1], NumberStyles.None, CultureInfo.InvariantCulture, out var minor))
        {
            return null;
        }

        return new MountEntry(id, parent, major, minor, Unescape(fields[3]), Unescape(fields[4]), Unescape(fields[separator + 1]), Unescape(fields[separator + 2]));
    }

    /// <summary>Undoes the kernel's octal escapes (<c>\040</c> space, <c>\011</c> tab, <c>\012</c> newline, <c>\134</c> backslash).</summary>
    internal static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }

        var bytes = new List<byte>(field.Length);
        var raw = Encoding.UTF8.GetBytes(field);
        for (var i = 0; i < raw.Length; i++)
        {
            if (raw[i] == '\\' && i + 3 < raw.Length && IsOctal(raw[i + 1]) && IsOctal(raw[i + 2]) && IsOctal(raw[i + 3]))
            {
                bytes.Add((byte)(((raw[i + 1] - '0') << 6) | ((raw[i + 2] - '0') << 3) | (raw[i + 3] - '0')));
                i += 3;
            }
            else
            {
                bytes.Add(raw[i]);
            }
        }

        return Encoding.UTF8.GetString(bytes.ToArray());

        static bool IsOctal(byte b) => b is >= (byte)'0' and <= (byte)'7';
    }
}
