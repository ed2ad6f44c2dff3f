using System.Diagnostics;
using Microsoft.Win32.SafeHandles;

namespace Slab.Store;

/// <summary>
/// The short benchmark that sets a pool's io priority when the pool is created: synchronous
/// (O_SYNC) 4 KiB random writes and 1 MiB sequential writes into a scratch file on the drive, each
/// for a fixed time budget. Synchronous writes at queue depth 1 expose device latency, which is what
/// separates NVMe from SSD from spinning disks.
/// </summary>
public static class PoolBenchmark
{
    /// <summary>Time spent on each of the two patterns.</summary>
    public static readonly TimeSpan PhaseDuration = TimeSpan.FromMilliseconds(300);

    private const int ScratchBytes = 64 * 1024 * 1024;

    public readonly record struct Measurement(double Iops, double MegabytesPerSecond);

    public static Task<Measurement> MeasureAsync(string directory, CancellationToken cancellationToken)
        => Task.Run(() => Measure(directory, cancellationToken), cancellationToken);

    /// <summary>
    /// High: at least 5,000 sync 4 KiB IOPS (NVMe-class); medium: at least 500 (SSD-class); else low.
    /// An unmeasured pool (0) is medium.
    /// </summary>
    public static IoPriority Classify(double iops) => iops switch
    {
        0 => IoPriority.Medium,
        >= 5000 => IoPriority.High,
        >= 500 => IoPriority.Medium,
        _ => IoPriority.Low,
    };

    private static Measurement Measure(string directory, CancellationToken cancellationToken)
    {
        var path = Path.Combine(directory, ".pool-benchmark");
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, FileOptions.WriteThrough);
            var block = new byte[1024 * 1024];
            Random.Shared.NextBytes(block);
            var iops = RunPhase(handle, block.AsSpan(0, 4096), random: true, cancellationToken);
            var sequentialOps = RunPhase(handle, block, random: false, cancellationToken);
            return new Measurement(iops, sequentialOps * block.Length / 1_000_000.0);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static double RunPhase(SafeFileHandle handle, ReadOnlySpan<byte> block, bool random, CancellationToken cancellationToken)
    {
        var slots = ScratchBytes / block.Length;
        var watch = Stopwatch.StartNew();
        long ops = 0;
        while (watch.Elapsed < PhaseDuration)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var slot = random ? Random.Shared.Next(slots) : (int)(ops % slots);
            RandomAccess.Write(handle, block, (long)slot * block.Length);
            ops++;
        }

        return ops / watch.Elapsed.TotalSeconds;
    }
}
