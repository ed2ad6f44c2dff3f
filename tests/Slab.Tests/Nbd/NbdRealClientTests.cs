using System.Security.Cryptography;
using System.Text.Json;
using Slab.Block;
using Xunit;

namespace Slab.Tests.Nbd;

/// <summary>Real NBD clients (libnbd tools, qemu-img, fio) against slabd's NBD frontend in Kestrel.</summary>
public sealed class NbdRealClientTests
{
    private const long ExportSize = 256L * 1024 * 1024;

    private static (TestExportCatalog Catalog, MemoryBlockTarget Disk) CreateCatalog()
    {
        var disk = new MemoryBlockTarget(ExportSize);
        var catalog = new TestExportCatalog()
            .Add("disk", disk, "a 256 MiB memory disk")
            .Add("disk@snap", new MemoryBlockTarget(ExportSize, readOnly: true), "read-only snapshot");
        return (catalog, disk);
    }

    [Fact]
    public async Task Nbdinfo_lists_exports()
    {
        var (catalog, _) = CreateCatalog();
        await using var server = await NbdTestServer.StartAsync(catalog);
        var output = await NbdTools.RunAsync("nbdinfo", "--list", server.Uri(""));
        Assert.Contains("export=\"disk\"", output, StringComparison.Ordinal);
        Assert.Contains("export=\"disk@snap\"", output, StringComparison.Ordinal);
        Assert.Contains("a 256 MiB memory disk", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nbdinfo_json_reports_size_flags_and_block_sizes()
    {
        var (catalog, _) = CreateCatalog();
        await using var server = await NbdTestServer.StartAsync(catalog);
        using var json = JsonDocument.Parse(await NbdTools.RunAsync("nbdinfo", "--json", server.Uri("disk")));
        var export = json.RootElement.GetProperty("exports")[0];
        Assert.Equal(ExportSize, export.GetProperty("export-size").GetInt64());
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
        Assert.True(export.GetProperty("can_flush").GetBoolean());
        Assert.True(export.GetProperty("can_fua").GetBoolean());
        Assert.True(export.GetProperty("can_trim").GetBoolean());
        Assert.True(export.GetProperty("can_zero").GetBoolean());
        Assert.True(export.GetProperty("can_multi_conn").GetBoolean());
        Assert.True(export.GetProperty("can_df").GetBoolean());
        Assert.Equal(4096, export.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(32 * 1024 * 1024, export.GetProperty("block_size_maximum").GetInt32());
        Assert.Equal("a 256 MiB memory disk", export.GetProperty("description").GetString());
        Assert.Contains(export.GetProperty("contexts").EnumerateArray(), c => c.GetString() == "base:allocation");

        using var snapshot = JsonDocument.Parse(await NbdTools.RunAsync("nbdinfo", "--json", server.Uri("disk@snap")));
        Assert.True(snapshot.RootElement.GetProperty("exports")[0].GetProperty("is_read_only").GetBoolean());
    }

    [Fact]
    public async Task Nbdinfo_map_shows_data_and_holes()
    {
        var (catalog, disk) = CreateCatalog();
        var data = new byte[1024 * 1024];
        Random.Shared.NextBytes(data);
        await disk.WriteAsync(64L * 1024 * 1024, data, BlockWriteFlags.None, default);
        await using var server = await NbdTestServer.StartAsync(catalog);
        var map = await NbdTools.RunAsync("nbdinfo", "--map", server.Uri("disk"));
        // Each line: "<offset> <length> <flags> <description>".
        var extents = map.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => (Offset: long.Parse(f[0]), Length: long.Parse(f[1]), Flags: int.Parse(f[2]), Description: f[3]))
            .ToList();
        Assert.Equal(
            [
                (0L, 64L << 20, 3, "hole,zero"),
                (64L << 20, 1L << 20, 0, "data"),
                (65L << 20, ExportSize - (65L << 20), 3, "hole,zero"),
            ],
            extents);
    }

    [Fact]
    public async Task Nbdcopy_round_trips_an_image()
    {
        var (catalog, _) = CreateCatalog();
        await using var server = await NbdTestServer.StartAsync(catalog);
        var source = Path.Combine(server.TempDirectory, "source.img");
        var back = Path.Combine(server.TempDirectory, "back.img");
        await CreateSparseImageAsync(source);

        await NbdTools.RunAsync("nbdcopy", source, server.Uri("disk"));
        await NbdTools.RunAsync("nbdcopy", server.Uri("disk"), back);

        Assert.Equal(await Sha256Async(source), await Sha256Async(back));
    }

    [Fact]
    public async Task Qemu_img_convert_and_compare()
    {
        var (catalog, _) = CreateCatalog();
        await using var server = await NbdTestServer.StartAsync(catalog);
        var source = Path.Combine(server.TempDirectory, "source.img");
        await CreateSparseImageAsync(source);

        await NbdTools.RunAsync("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", source, server.Uri("disk"));
        var compare = await NbdTools.RunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", source, server.Uri("disk"));
        Assert.Contains("Images are identical", compare, StringComparison.Ordinal);

        // A different image must be detected as different (the comparison really reads the export).
        await using (var file = new FileStream(source, FileMode.Open, FileAccess.Write))
        {
            file.Position = 200L * 1024 * 1024;
            file.Write([1, 2, 3, 4]);
        }

        var differs = await NbdTools.TryRunAsync("qemu-img", "compare", "-f", "raw", "-F", "raw", source, server.Uri("disk"));
        Assert.Equal(1, differs.ExitCode);
    }

    [Fact]
    public async Task Fio_nbd_engine_verifies_crc32c()
    {
        NbdTools.Require("fio");
        var engines = await NbdTools.RunAsync("fio", "--enghelp");
        Assert.True(engines.Contains("nbd", StringComparison.Ordinal), "fio was built without the nbd engine (fio --enghelp does not list it)");

        var (catalog, _) = CreateCatalog();
        await using var server = await NbdTestServer.StartAsync(catalog);
        var output = await NbdTools.RunAsync(
            "fio",
            "--name=slab-verify",
            "--ioengine=nbd",
            "--uri=" + server.Uri("disk"),
            "--rw=randwrite",
            "--bs=4k",
            "--size=64m",
            "--iodepth=32",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--output-format=json");
        using var json = JsonDocument.Parse(output[output.IndexOf('{', StringComparison.Ordinal)..]);
        var job = json.RootElement.GetProperty("jobs")[0];
        Assert.Equal(0, job.GetProperty("error").GetInt32());
        Assert.Equal(64L * 1024 * 1024, job.GetProperty("write").GetProperty("io_bytes").GetInt64());
        Assert.Equal(64L * 1024 * 1024, job.GetProperty("read").GetProperty("io_bytes").GetInt64());
    }

    [Fact]
    public async Task Read_only_export_refuses_writes_from_qemu_img()
    {
        var (catalog, _) = CreateCatalog();
        await using var server = await NbdTestServer.StartAsync(catalog);
        var source = Path.Combine(server.TempDirectory, "source.img");
        await CreateSparseImageAsync(source);
        var result = await NbdTools.TryRunAsync("qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", source, server.Uri("disk@snap"));
        Assert.NotEqual(0, result.ExitCode);
    }

    /// <summary>A 256 MiB sparse image with random data in a few regions (some unaligned).</summary>
    private static async Task CreateSparseImageAsync(string path)
    {
        await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.SetLength(ExportSize);
        var random = new Random(42);
        foreach (var (offset, length) in new (long, int)[] { (0, 8 << 20), (33_554_432 + 4096, 3 << 20), (150_000_000, 1_000_000), (ExportSize - (1 << 20), 1 << 20) })
        {
            var data = new byte[length];
            random.NextBytes(data);
            file.Position = offset;
            await file.WriteAsync(data);
        }
    }

    private static async Task<string> Sha256Async(string path)
    {
        await using var file = File.OpenRead(path);
        return Convert.ToHexString(await SHA256.HashDataAsync(file));
    }
}
