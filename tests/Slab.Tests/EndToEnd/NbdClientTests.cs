using System.Text.Json;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>Real NBD clients (libnbd's tools, qemu-img, fio) against volumes served by a real slabd.</summary>
public sealed class NbdClientTests(NodeFixture fixture) : IClassFixture<NodeFixture>, IDisposable
{
    private readonly string _scratch = Directory.CreateTempSubdirectory("slab-nbd-e2e-").FullName;

    private SlabNode Node => fixture.Node;

    public void Dispose() => Directory.Delete(_scratch, recursive: true);

    private static string Name(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    private string RandomFile(string name, int mebibytes, int seed)
    {
        var path = Path.Combine(_scratch, name);
        var random = new Random(seed);
        var buffer = new byte[1 << 20];
        using var file = File.Create(path);
        for (var i = 0; i < mebibytes; i++)
        {
            random.NextBytes(buffer);
            // Leave every fourth MiB zero so sparseness and block status have something to show.
            if (i % 4 == 3)
            {
                Array.Clear(buffer);
            }

            file.Write(buffer);
        }

        return path;
    }

    [Fact]
    public async Task Nbdinfo_lists_volumes_and_snapshots()
    {
        HostCommand.RequireTool("nbdinfo", "libnbd-bin");
        var name = Name("listed");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        await Node.CliOkAsync("volume", "snapshot", "create", name, "--name", "s1");
        var list = await HostCommand.CheckedAsync("nbdinfo", "--list", "--json", Node.NbdUri(""));
        using var json = JsonDocument.Parse(list);
        var exports = json.RootElement.GetProperty("exports").EnumerateArray().ToList();
        var volume = exports.Single(e => e.GetProperty("export-name").GetString() == name);
        Assert.Equal(1L << 30, volume.GetProperty("export-size").GetInt64());
        Assert.False(volume.GetProperty("is_read_only").GetBoolean());
        Assert.True(volume.GetProperty("can_multi_conn").GetBoolean());
        var snapshot = exports.Single(e => e.GetProperty("export-name").GetString() == $"{name}@s1");
        Assert.True(snapshot.GetProperty("is_read_only").GetBoolean());
    }

    [Fact]
    public async Task Nbdcopy_in_and_out_round_trips_with_checksums_and_keeps_holes()
    {
        HostCommand.RequireTool("nbdcopy", "libnbd-bin");
        var name = Name("copy");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        var input = RandomFile("in.bin", 64, seed: 1);
        await HostCommand.CheckedAsync("nbdcopy", input, Node.NbdUri(name));
        var output = Path.Combine(_scratch, "out.bin");
        await HostCommand.CheckedAsync("nbdcopy", Node.NbdUri(name), output);
        Assert.Equal(1L << 30, new FileInfo(output).Length);
        Assert.Equal(HostCommand.Sha256OfFile(input), HostCommand.Sha256OfFilePrefix(output, 64L << 20));

        // Block status: the tail of the 1 GiB volume was never written and is a hole.
        var map = await HostCommand.CheckedAsync("nbdinfo", "--map", Node.NbdUri(name));
        Assert.Contains("hole,zero", map, StringComparison.Ordinal);
        var used = (await Node.CliJsonAsync("volume", "inspect", name));
        used = used.ValueKind == JsonValueKind.Array ? used[0] : used;
        Assert.True(long.Parse(used.GetProperty("usedBytes").GetString() ?? "0") < 200L << 20, "the volume stays thin");
    }

    [Fact]
    public async Task Qemu_img_convert_and_compare()
    {
        HostCommand.RequireTool("qemu-img", "qemu-utils");
        var name = Name("qemu");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        var input = RandomFile("qemu-in.raw", 32, seed: 2);
        // The volume is larger than the image: compare the image against the first 32 MiB only.
        await HostCommand.CheckedAsync("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", input, Node.NbdUri(name));
        var compare = await HostCommand.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", input, Node.NbdUri(name)]);
        // Exit 0: identical over the shorter image, and the rest of the volume is zero.
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    [Fact]
    public async Task Fio_nbd_engine_verifies_random_writes()
    {
        HostCommand.RequireTool("fio", "fio");
        var name = Name("fio");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        var result = await HostCommand.RunAsync("fio",
        [
            "--name=verify", "--ioengine=nbd", $"--uri={Node.NbdUri(name)}", "--rw=randwrite", "--bs=4k",
            "--size=64m", "--iodepth=16", "--verify=crc32c", "--verify_fatal=1", "--do_verify=1", "--output-format=json",
        ], TimeSpan.FromMinutes(5));
        Assert.True(result.ExitCode == 0, result.ToString());
        using var json = JsonDocument.Parse(result.Stdout[result.Stdout.IndexOf('{', StringComparison.Ordinal)..]);
        var job = json.RootElement.GetProperty("jobs")[0];
        Assert.Equal(0, job.GetProperty("error").GetInt32());
        Assert.True(job.GetProperty("write").GetProperty("io_bytes").GetInt64() >= 64L << 20);
    }

    [Fact]
    public async Task Protocol_errors_are_errors_not_crashes()
    {
        var name = Name("errs");
        await Node.CliOkAsync("volume", "create", name, "--size", "1");
        await Node.CliOkAsync("volume", "snapshot", "create", name, "--name", "ro");

        using (var client = await TestNbdClient.ConnectAsync(Node.NbdSocket, name))
        {
            Assert.Equal(22u, await client.ReadAsync(client.Size - 512, new byte[4096])); // EINVAL past the end
            Assert.Equal(0u, await client.WriteAsync(4096, new byte[4096]));
        }

        using (var snapshot = await TestNbdClient.ConnectAsync(Node.NbdSocket, $"{name}@ro"))
        {
            Assert.True(snapshot.IsReadOnly);
            Assert.Equal(1u, await snapshot.WriteAsync(0, new byte[4096])); // EPERM
        }

        var unknown = await Assert.ThrowsAsync<NbdErrorException>(() => TestNbdClient.ConnectAsync(Node.NbdSocket, "no-such-export"));
        Assert.Equal(0x80000006u, unknown.Reply); // NBD_REP_ERR_UNKNOWN

        // A malformed request closes that connection; another connection keeps working.
        using var good = await TestNbdClient.ConnectAsync(Node.NbdSocket, name);
        using (var bad = await TestNbdClient.ConnectAsync(Node.NbdSocket, name))
        {
            await bad.SendRawAsync(new byte[28]); // wrong request magic
            Assert.True(await bad.IsClosedByServerAsync(TimeSpan.FromSeconds(30)));
        }

        var data = new byte[4096];
        Random.Shared.NextBytes(data);
        Assert.Equal(0u, await good.WriteAsync(8192, data));
        var back = new byte[4096];
        Assert.Equal(0u, await good.ReadAsync(8192, back));
        Assert.Equal(data, back);
        Assert.Contains(name, await Node.CliOkAsync("volume", "list"), StringComparison.Ordinal);
    }
}
