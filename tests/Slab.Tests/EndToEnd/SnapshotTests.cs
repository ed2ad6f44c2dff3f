extern alias cli;
using System.Text.Json;
using Slab.Tests.Infrastructure;
using Xunit;
using V1 = cli::Slab.Api.V1;

namespace Slab.Tests.EndToEnd;

/// <summary>Snapshots, clones and restore on a real slabd, contents compared by checksum.</summary>
public sealed class SnapshotTests(NodeFixture fixture) : IClassFixture<NodeFixture>, IDisposable
{
    private const int DataMiB = 16;
    private readonly string _scratch = Directory.CreateTempSubdirectory("slab-snap-e2e-").FullName;

    private SlabNode Node => fixture.Node;

    public void Dispose() => Directory.Delete(_scratch, recursive: true);

    private static string Name(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    private async Task<string> WriteRandomAsync(string export, int seed)
    {
        var path = Path.Combine(_scratch, $"data-{seed}.bin");
        var bytes = new byte[DataMiB << 20];
        new Random(seed).NextBytes(bytes);
        await File.WriteAllBytesAsync(path, bytes);
        await HostCommand.CheckedAsync("nbdcopy", path, Node.NbdUri(export));
        return HostCommand.Sha256OfFile(path);
    }

    private async Task<string> ChecksumAsync(string export)
    {
        var path = Path.Combine(_scratch, $"read-{Guid.NewGuid():N}.bin");
        await HostCommand.CheckedAsync("nbdcopy", Node.NbdUri(export), path);
        Assert.Equal(DataMiB << 20, new FileInfo(path).Length);
        var sum = HostCommand.Sha256OfFile(path);
        File.Delete(path);
        return sum;
    }

    [Fact]
    public async Task Snapshot_clone_and_restore_keep_the_right_contents()
    {
        HostCommand.RequireTool("nbdcopy", "libnbd-bin");
        var volume = Name("src");
        await Node.CliOkAsync("volume", "create", volume, "--size", $"{DataMiB}M");
        var first = await WriteRandomAsync(volume, seed: 10);
        await Node.CliOkAsync("volume", "snapshot", "create", volume, "--name", "before");
        var second = await WriteRandomAsync(volume, seed: 11);
        Assert.NotEqual(first, second);

        Assert.Equal(first, await ChecksumAsync($"{volume}@before"));
        Assert.Equal(second, await ChecksumAsync(volume));

        var fromSnapshot = Name("clone-snap");
        await Node.CliOkAsync("volume", "clone", $"{volume}@before", "--name", fromSnapshot);
        Assert.Equal(first, await ChecksumAsync(fromSnapshot));

        var fromVolume = Name("clone-vol");
        await Node.CliOkAsync("volume", "clone", volume, "--name", fromVolume);
        Assert.Equal(second, await ChecksumAsync(fromVolume));

        // Clones are independent of their source.
        await WriteRandomAsync(fromVolume, seed: 12);
        Assert.Equal(second, await ChecksumAsync(volume));

        await Node.CliOkAsync("volume", "restore", volume, "--snapshot", "before");
        Assert.Equal(first, await ChecksumAsync(volume));
        Assert.Equal(first, await ChecksumAsync($"{volume}@before"));

        var inspect = await Node.CliJsonAsync("volume", "inspect", fromSnapshot);
        inspect = inspect.ValueKind == JsonValueKind.Array ? inspect[0] : inspect;
        Assert.Equal($"{volume}@before", inspect.GetProperty("source").GetString());
    }

    [Fact]
    public async Task A_snapshot_of_a_volume_under_writes_is_consistent_and_restore_needs_it_closed()
    {
        var volume = Name("busy");
        await Node.CliOkAsync("volume", "create", volume, "--size", "1");
        using var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, volume);
        var block = new byte[4096];
        for (var i = 0; i < 64; i++)
        {
            block.AsSpan().Fill((byte)(i + 1));
            Assert.Equal(0u, await client.WriteAsync(i * 4096L, block));
        }

        // Every acknowledged write is in the snapshot even though nothing was flushed.
        await Node.CliOkAsync("volume", "snapshot", "create", volume, "--name", "live");
        using (var snapshot = await TestNbdClient.ConnectAsync(Node.NbdSocket, $"{volume}@live"))
        {
            for (var i = 0; i < 64; i++)
            {
                Assert.Equal(0u, await snapshot.ReadAsync(i * 4096L, block));
                Assert.All(block, b => Assert.Equal((byte)(i + 1), b));
            }
        }

        var restore = await Node.CliAsync("volume", "restore", volume, "--snapshot", "live");
        Assert.NotEqual(0, restore.ExitCode);
        Assert.Contains("in use by", restore.Stderr, StringComparison.Ordinal);
        var delete = await Node.CliAsync("volume", "delete", volume);
        Assert.NotEqual(0, delete.ExitCode);
        Assert.Contains("in use by", delete.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_volume_holds_256_snapshots()
    {
        var volume = Name("many");
        await Node.CliOkAsync("volume", "create", volume, "--size", "1");
        using var channel = ApiChannel.ForUnixSocket(Node.ApiSocket);
        var snapshots = new V1.Snapshots.SnapshotsClient(channel);
        using var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, volume);
        var block = new byte[4096];
        for (var i = 0; i < 256; i++)
        {
            // Each snapshot sees a different block 0.
            block.AsSpan().Fill((byte)i);
            Assert.Equal(0u, await client.WriteAsync(0, block));
            await snapshots.CreateAsync(new V1.CreateSnapshotRequest { Volume = volume, Name = $"s{i:D3}" });
        }

        var listed = await snapshots.EnumerateAsync(new V1.EnumerateSnapshotsRequest { Volume = volume });
        Assert.Equal(256, listed.Snapshots.Count);
        foreach (var i in new[] { 0, 1, 127, 255 })
        {
            using var snapshot = await TestNbdClient.ConnectAsync(Node.NbdSocket, $"{volume}@s{i:D3}");
            Assert.Equal(0u, await snapshot.ReadAsync(0, block));
            Assert.All(block, b => Assert.Equal((byte)i, b));
        }
    }
}
