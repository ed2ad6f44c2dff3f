using System.Collections.Immutable;

namespace Slab.Volumes;

/// <summary>Where and how a volume is attached on this host, and where it is mounted.</summary>
public sealed record AttachmentInfo(
    string NodeId,
    string NodeName,
    string DevicePath,
    string Method,
    ImmutableList<string> MountPaths,
    DateTimeOffset Attached);
