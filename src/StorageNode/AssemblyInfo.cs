using System.Runtime.Versioning;

// slabd drives Linux block devices, loop, FUSE, XFS reflinks and O_DIRECT: it runs on Linux only.
[assembly: SupportedOSPlatform("linux")]
