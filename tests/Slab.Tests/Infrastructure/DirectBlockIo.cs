namespace Slab.Tests.Infrastructure;

/// <summary>
/// Reads and writes a block device with <c>dd</c> and O_DIRECT, past the page cache, as an
/// application would: a write is also fsync'd, so an I/O error shows in the exit code.
/// </summary>
public static class DirectBlockIo
{
    /// <summary>Writes <paramref name="data"/> (a multiple of <paramref name="blockSize"/>) at <paramref name="offset"/>; returns dd's result.</summary>
    public static async Task<HostCommand.Result> WriteAsync(string device, long offset, byte[] data, int blockSize = 4096, TimeSpan? timeout = null)
    {
        var source = TempPath();
        try
        {
            await File.WriteAllBytesAsync(source, data);
            return await HostCommand.RunAsync(
                "dd",
                [$"if={source}", $"of={device}", $"bs={blockSize}", $"count={data.Length / blockSize}", $"seek={offset / blockSize}", "oflag=direct", "conv=notrunc,fsync", "status=none"],
                timeout ?? TimeSpan.FromSeconds(120));
        }
        finally
        {
            File.Delete(source);
        }
    }

    /// <summary>As <see cref="WriteAsync"/>, and throws when dd failed.</summary>
    public static async Task WriteCheckedAsync(string device, long offset, byte[] data, int blockSize = 4096)
    {
        var result = await WriteAsync(device, offset, data, blockSize);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"writing {data.Length} bytes to {device} at {offset}: {result}");
        }
    }

    /// <summary>Reads <paramref name="length"/> bytes (a multiple of <paramref name="blockSize"/>) at <paramref name="offset"/>; throws when dd failed.</summary>
    public static async Task<byte[]> ReadAsync(string device, long offset, int length, int blockSize = 4096)
    {
        var target = TempPath();
        try
        {
            var result = await HostCommand.RunAsync(
                "dd",
                [$"if={device}", $"of={target}", $"bs={blockSize}", $"count={length / blockSize}", $"skip={offset / blockSize}", "iflag=direct", "status=none"],
                TimeSpan.FromSeconds(120));
            if (result.ExitCode != 0)
            {
                throw new InvalidOperationException($"reading {length} bytes of {device} at {offset}: {result}");
            }

            return await File.ReadAllBytesAsync(target);
        }
        finally
        {
            File.Delete(target);
        }
    }

    private static string TempPath() => Path.Combine(Path.GetTempPath(), "slab-block-" + Guid.NewGuid().ToString("N"));
}
