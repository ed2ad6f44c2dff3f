using Slab.Tests.Replication;
using Xunit;

namespace Slab.Tests.Infrastructure;

/// <summary>Writes distinct 4 KiB patterns to a block device with O_DIRECT and checks them back; for the end-to-end fault tests.</summary>
internal static class BlockPatterns
{
    public const int Block = 4096;

    /// <summary>Writes <paramref name="count"/> blocks of distinct patterns, each acknowledged (dd exits 0); returns what was written where.</summary>
    public static async Task<List<(long Offset, byte[] Data)>> WriteAsync(string device, int count, Func<int, long> offsetOf, int seed, Func<string>? log = null)
    {
        var written = new List<(long Offset, byte[] Data)>(count);
        for (var i = 0; i < count; i++)
        {
            var data = TestData.Pattern(Block, seed + i);
            var write = await DirectBlockIo.WriteAsync(device, offsetOf(i), data);
            Assert.True(write.ExitCode == 0, $"write {i} at {offsetOf(i)}: {write}\n{log?.Invoke()}");
            written.Add((offsetOf(i), data));
        }

        return written;
    }

    /// <summary>Asserts every block reads back as written.</summary>
    public static async Task AssertReadsBackAsync(string device, IEnumerable<(long Offset, byte[] Data)> written)
    {
        foreach (var (offset, data) in written)
        {
            Assert.Equal(data, await DirectBlockIo.ReadAsync(device, offset, Block));
        }
    }
}
