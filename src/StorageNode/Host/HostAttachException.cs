namespace Slab.Host;

/// <summary>Why a host attach or filesystem operation failed. Callers map these to gRPC status codes.</summary>
public enum HostAttachError
{
    /// <summary>A bad request: volume name, size (unaligned, shrink, above the export's size), path. → InvalidArgument.</summary>
    InvalidArgument,

    /// <summary>The volume is already attached on this host. → AlreadyExists.</summary>
    AlreadyAttached,

    /// <summary>The volume is not attached on this host. → NotFound / FailedPrecondition.</summary>
    NotAttached,

    /// <summary>The device or mount point is in use (mounted, held open). <see cref="HostAttachException.MountPoints"/> names the mounts. → FailedPrecondition.</summary>
    Busy,

    /// <summary>A host tool is not installed; <see cref="HostAttachException.Tool"/> and <see cref="HostAttachException.DebianPackage"/> say which. → FailedPrecondition.</summary>
    ToolMissing,

    /// <summary>A host tool or the kernel failed. → Internal / Unavailable.</summary>
    DeviceFailed,

    /// <summary>The operation cannot be done online this way (grow through the kernel NBD driver, xfs offline, ...). → FailedPrecondition / Unimplemented.</summary>
    GrowUnsupported,
}

/// <summary>A host attach or filesystem operation failed; classify by <see cref="Error"/>, never by message.</summary>
public sealed class HostAttachException : Exception
{
    public HostAttachException(HostAttachError error, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Error = error;
    }

    public HostAttachError Error { get; }

    /// <summary>For <see cref="HostAttachError.ToolMissing"/>: the program that is missing.</summary>
    public string? Tool { get; init; }

    /// <summary>For <see cref="HostAttachError.ToolMissing"/>: the Debian package that installs it.</summary>
    public string? DebianPackage { get; init; }

    /// <summary>For <see cref="HostAttachError.Busy"/>: where the device is mounted (empty when it is held some other way).</summary>
    public IReadOnlyList<string> MountPoints { get; init; } = [];

    /// <summary>The volume, when the operation was about one.</summary>
    public string? VolumeName { get; init; }
}
