using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

using Slab.Common;

namespace Slab.Host;

/// <summary>What one attachment made, persisted as <c>RUN/attach/&lt;volume&gt;/state.json</c>.</summary>
internal sealed record AttachmentState
{
    public int Version { get; init; } = 1;

    public required string VolumeName { get; init; }

    public required AttachMethod Method { get; init; }

    public required string NbdUnixSocket { get; init; }

    public required string ExportName { get; init; }

    public required long SizeBytes { get; init; }

    /// <summary>/dev/loopN or /dev/nbdN.</summary>
    public required string DevicePath { get; init; }

    public string? FuseMountPoint { get; init; }

    public string? BackingFile { get; init; }

    public int? NbdfusePid { get; init; }

    public bool DirectIo { get; init; }

    public DateTimeOffset AttachedAt { get; init; }

    /// <summary>The reconnecting relay's socket, which nbdfuse connects to (null: nbdfuse connects to slabd).</summary>
    public string? RelaySocket { get; init; }

    /// <summary>The relay (nbdkit) process.</summary>
    public int? RelayPid { get; init; }

    /// <summary>Where slabd mounted the device.</summary>
    public IReadOnlyList<string> MountPaths { get; init; } = [];

    public AttachedDevice ToAttachedDevice(string directory) =>
        new(VolumeName, DevicePath, Method, SizeBytes, directory, FuseMountPoint, BackingFile, NbdfusePid, DirectIo, RelayPid)
        {
            MountPaths = MountPaths,
            AttachedAt = AttachedAt,
        };
}

[JsonSourceGenerationOptions(WriteIndented = true, UseStringEnumConverter = true)]
[JsonSerializable(typeof(AttachmentState))]
internal sealed partial class AttachmentStateJsonContext : JsonSerializerContext;

/// <summary>The layout of <c>RUN/attach</c> and atomic reads and writes of state files.</summary>
internal sealed partial class AttachmentLayout(HostOptions options)
{
    public const string StateFileName = "state.json";
    public const string PidFileName = "nbdfuse.pid";
    public const string LogFileName = "nbdfuse.log";
    public const string FuseDirectoryName = "fuse";
    public const string RelayPidFileName = "relay.pid";
    public const string RelayLogFileName = "relay.log";

    public string Root { get; } = MountTable.Normalize(options.AttachDirectory);

    public string DirectoryOf(string volumeName) => Path.Combine(Root, volumeName);

    public string StateFileOf(string volumeName) => Path.Combine(DirectoryOf(volumeName), StateFileName);

    public string FuseMountPointOf(string volumeName) => Path.Combine(DirectoryOf(volumeName), FuseDirectoryName);

    public string BackingFileOf(string volumeName) => Path.Combine(FuseMountPointOf(volumeName), volumeName);

    public string PidFileOf(string volumeName) => Path.Combine(DirectoryOf(volumeName), PidFileName);

    public string LogFileOf(string volumeName) => Path.Combine(DirectoryOf(volumeName), LogFileName);

    /// <summary><c>RUN/relay</c>: the relays' sockets (kept out of the attachment directories so their paths stay short).</summary>
    public string RelayRoot { get; } = MountTable.Normalize(Path.Combine(options.RunDirectory, "relay"));

    /// <summary>
    /// <c>RUN/relay/&lt;16 hex digits of the name's SHA-256&gt;.sock</c>: a unix socket path must fit in
    /// 108 bytes, which a 128-character volume name under the attachment directory would not.
    /// </summary>
    public string RelaySocketOf(string volumeName) =>
        Path.Combine(RelayRoot, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(volumeName)))[..16] + ".sock");

    public string RelayPidFileOf(string volumeName) => Path.Combine(DirectoryOf(volumeName), RelayPidFileName);

    public string RelayLogFileOf(string volumeName) => Path.Combine(DirectoryOf(volumeName), RelayLogFileName);

    /// <summary>Names of the attachment directories present now.</summary>
    public IReadOnlyList<string> ListVolumes() =>
        Directory.Exists(Root)
            ? Directory.EnumerateDirectories(Root).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList()
            : [];

    /// <summary>Throws <see cref="HostAttachError.InvalidArgument"/> unless the name is safe as a directory and file name.</summary>
    public static void ValidateVolumeName(string volumeName)
    {
        if (string.IsNullOrEmpty(volumeName) || !VolumeNamePattern().IsMatch(volumeName))
        {
            throw new HostAttachException(HostAttachError.InvalidArgument,
                $"volume name '{volumeName}' is not usable on the host: it must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}")
            {
                VolumeName = volumeName,
            };
        }
    }

    /// <summary>The state, or null when there is no (readable) state file.</summary>
    public static AttachmentState? TryRead(string stateFile)
    {
        try
        {
            using var stream = File.OpenRead(stateFile);
            return JsonSerializer.Deserialize(stream, AttachmentStateJsonContext.Default.AttachmentState);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Writes the state atomically: temp file, fsync, rename over, fsync the directory.</summary>
    public static void Write(string stateFile, AttachmentState state)
    {
        var directory = Path.GetDirectoryName(stateFile)!;
        var temporary = stateFile + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.None))
        {
            JsonSerializer.Serialize(stream, state, AttachmentStateJsonContext.Default.AttachmentState);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporary, stateFile, overwrite: true);
        HostNative.FsyncDirectory(directory);
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", RegexOptions.CultureInvariant)]
    private static partial Regex VolumeNamePattern();
}
