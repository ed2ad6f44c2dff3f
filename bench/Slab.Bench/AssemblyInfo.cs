using System.Runtime.Versioning;

// Like slabd, its tests and benchmarks run on Linux only.
[assembly: SupportedOSPlatform("linux")]
