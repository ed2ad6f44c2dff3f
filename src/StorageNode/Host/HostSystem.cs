using System.Globalization;
using System.Text;

namespace Slab.Host;

/// <summary>What sysfs says about block devices, loop devices in particular.</summary>
internal static class BlockSysfs
{
    /// <summary><c>/dev/loop3</c> → <c>loop3</c>.</summary>
    public static string KernelName(string devicePath) => Path.GetFileName(devicePath);

    /// <summary>The device's major:minor, or null when it does not exist.</summary>
    public static (int Major, int Minor)? DeviceNumber(string devicePath)
    {
        var text = ReadOrNull($"/sys/block/{KernelName(devicePath)}/dev");
        if (text is null)
        {
            return null;
        }

        var parts = text.Split(':');
        return parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var minor)
            ? (major, minor)
            : null;
    }

    /// <summary>The device's size in bytes from <c>/sys/block/X/size</c> (512-byte sectors), or null.</summary>
    public static long? SizeBytes(string devicePath)
    {
        var text = ReadOrNull($"/sys/block/{KernelName(devicePath)}/size");
        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var sectors) ? sectors * 512 : null;
    }

    /// <summary>The loop device's backing file, or null when the loop is unbound (or not a loop).</summary>
    public static string? LoopBackingFile(string loopDevice) => ReadOrNull($"/sys/block/{KernelName(loopDevice)}/loop/backing_file");

    /// <summary>Whether the loop device does direct I/O to its backing file.</summary>
    public static bool LoopDirectIo(string loopDevice) => ReadOrNull($"/sys/block/{KernelName(loopDevice)}/loop/dio") == "1";

    /// <summary>Bound loop devices whose backing file is <paramref name="backingFile"/>.</summary>
    public static IReadOnlyList<string> LoopsBackedBy(string backingFile) =>
        BoundLoops().Where(l => string.Equals(l.BackingFile, backingFile, StringComparison.Ordinal)).Select(l => l.Device).ToList();

    /// <summary>Every bound loop device and its backing file.</summary>
    public static IReadOnlyList<(string Device, string BackingFile)> BoundLoops()
    {
        var loops = new List<(string, string)>();
        if (!Directory.Exists("/sys/block"))
        {
            return loops;
        }

        foreach (var directory in Directory.EnumerateDirectories("/sys/block", "loop*"))
        {
            var device = "/dev/" + Path.GetFileName(directory);
            var backing = LoopBackingFile(device);
            if (backing is not null)
            {
                loops.Add((device, backing));
            }
        }

        return loops;
    }

    /// <summary>Whether the nbd device is connected (<c>/sys/block/nbdN/pid</c> exists and is not empty).</summary>
    public static bool NbdConnected(string nbdDevice) => !string.IsNullOrEmpty(ReadOrNull($"/sys/block/{KernelName(nbdDevice)}/pid"));

    /// <summary>The first nbd device that exists and is not connected, or null.</summary>
    public static string? FirstFreeNbd()
    {
        for (var i = 0; ; i++)
        {
            var device = $"/dev/nbd{i}";
            if (!Directory.Exists($"/sys/block/nbd{i}"))
            {
                return null;
            }

            if (!NbdConnected(device) && SizeBytes(device) is null or 0)
            {
                return device;
            }
        }
    }

    private static string? ReadOrNull(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }
}
