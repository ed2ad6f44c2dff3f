using System.Buffers.Binary;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>
/// kill -9 of slabd under load, many times. Block level: every flushed write reads back after the
/// restart and every block holds a whole value that was really written. Filesystem level: fsynced
/// files survive and fsck stays clean.
/// </summary>
public sealed class CrashTests
{
    private const int BlockSize = 4096;
    private const int BlocksPerWriter = 512;
    private const int Writers = 3;
    private const int Iterations = 8;

    [Fact]
    public async Task Flushed_writes_survive_repeated_kill_9()
    {
        await using var node = await SlabNode.StartAsync(driveBytes: 4L << 30);
        await node.CliOkAsync("volume", "create", "crash", "--size", "1", "--fs", "none");
        var random = new Random(20261122);

        // Each writer owns a disjoint range of blocks. For every block: the stamp a completed flush
        // covers, and the stamps written since (which may or may not survive a crash).
        var flushed = new ulong[Writers * BlocksPerWriter];
        var pending = Enumerable.Range(0, flushed.Length).Select(_ => new HashSet<ulong>()).ToArray();

        for (var iteration = 1; iteration <= Iterations; iteration++)
        {
            var flushesBeforeKill = random.Next(3, 30);
            var flushCount = 0;
            var killed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var round = iteration;
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
            {
                var writerRandom = new Random(round * 100 + w);
                using var client = await TestNbdClient.ConnectAsync(node.NbdSocket, "crash");
                var block = new byte[BlockSize];
                var lastWritten = new Dictionary<int, ulong>();
                ulong sequence = 0;
                try
                {
                    while (!killed.Task.IsCompleted)
                    {
                        var index = w * BlocksPerWriter + writerRandom.Next(BlocksPerWriter);
                        var stamp = ((ulong)round << 40) | ((ulong)w << 32) | ++sequence;
                        Fill(block, stamp, index);
                        pending[index].Add(stamp);
                        Assert.Equal(0u, await client.WriteAsync((long)index * BlockSize, block));
                        lastWritten[index] = stamp;
                        if (writerRandom.Next(8) != 0)
                        {
                            continue;
                        }

                        Assert.Equal(0u, await client.FlushAsync());
                        foreach (var (b, s) in lastWritten)
                        {
                            flushed[b] = s;
                            pending[b].Clear();
                        }

                        lastWritten.Clear();
                        if (Interlocked.Increment(ref flushCount) == flushesBeforeKill)
                        {
                            // Tell the other writers first: their next I/O fails once the daemon dies.
                            killed.TrySetResult();
                            await node.KillAsync();
                        }
                    }
                }
                catch (Exception ex) when (killed.Task.IsCompleted && ex is IOException or System.Net.Sockets.SocketException or EndOfStreamException)
                {
                    // The daemon died under this writer: expected.
                }
            })).ToArray();
            await Task.WhenAll(writers);

            await node.StartProcessAsync();
            using var reader = await TestNbdClient.ConnectAsync(node.NbdSocket, "crash");
            var read = new byte[BlockSize];
            var expected = new byte[BlockSize];
            for (var index = 0; index < flushed.Length; index++)
            {
                Assert.Equal(0u, await reader.ReadAsync((long)index * BlockSize, read));
                var stamp = BinaryPrimitives.ReadUInt64LittleEndian(read);
                if (stamp == 0)
                {
                    Assert.True(read.All(b => b == 0), $"iteration {iteration}: block {index} is garbage");
                }
                else
                {
                    Fill(expected, stamp, index);
                    Assert.True(read.AsSpan().SequenceEqual(expected), $"iteration {iteration}: block {index} is torn");
                }

                Assert.True(
                    stamp == flushed[index] || pending[index].Contains(stamp),
                    $"iteration {iteration}: block {index} holds {stamp:x}; the last flushed write was {flushed[index]:x} and {pending[index].Count} writes were pending");

                // What survived is the baseline of the next round.
                flushed[index] = stamp;
                pending[index].Clear();
            }
        }
    }

    [Fact]
    public async Task Fsynced_files_survive_kill_9_and_fsck_stays_clean()
    {
        await using var node = await SlabNode.StartAsync(driveBytes: 4L << 30);
        await node.CliOkAsync("volume", "create", "fscrash", "--size", "1", "--fs", "ext4");
        var mount = Path.Combine(node.Root, "mnt");
        var synced = new Dictionary<string, byte[]>();
        var random = new Random(7);
        for (var round = 0; round < 3; round++)
        {
            await node.CliOkAsync("host", "mount", "fscrash", mount);
            foreach (var (file, content) in synced)
            {
                Assert.Equal(content, await File.ReadAllBytesAsync(Path.Combine(mount, file)));
            }

            for (var i = 0; i < 20; i++)
            {
                var name = $"r{round}-f{i}.bin";
                var content = new byte[random.Next(1, 256) * 1024];
                random.NextBytes(content);
                await using (var stream = new FileStream(Path.Combine(mount, name), FileMode.CreateNew))
                {
                    await stream.WriteAsync(content);
                    stream.Flush(flushToDisk: true);
                }

                synced[name] = content;
            }

            await HostCommand.SyncAsync(mount);
            // Unsynced writes in flight when the daemon dies.
            await File.WriteAllBytesAsync(Path.Combine(mount, $"r{round}-unsynced.bin"), new byte[1 << 20]);
            await node.KillAsync();
            await node.StartProcessAsync();
            Assert.Contains("stale", node.Log, StringComparison.OrdinalIgnoreCase);
        }

        // Mounting replays the journal; after that the filesystem must check clean.
        await node.CliOkAsync("host", "mount", "fscrash", mount);
        foreach (var (file, content) in synced)
        {
            Assert.Equal(content, await File.ReadAllBytesAsync(Path.Combine(mount, file)));
        }

        await node.CliOkAsync("host", "unmount", "fscrash", mount);
        var device = (await node.CliOkAsync("host", "attach", "fscrash")).Trim();
        var fsck = await HostCommand.RunAsync("fsck.ext4", ["-n", "-f", device]);
        Assert.True(fsck.ExitCode == 0, fsck.ToString());
        await node.CliOkAsync("host", "detach", "fscrash");
    }

    /// <summary>Block content: the stamp, the block index, then bytes derived from both.</summary>
    private static void Fill(byte[] block, ulong stamp, int index)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(block, stamp);
        BinaryPrimitives.WriteInt32LittleEndian(block.AsSpan(8), index);
        var seed = (byte)(stamp ^ (ulong)index);
        for (var i = 12; i < block.Length; i++)
        {
            block[i] = (byte)(seed + i);
        }
    }
}
