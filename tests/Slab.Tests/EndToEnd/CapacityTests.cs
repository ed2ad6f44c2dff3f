using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>A thin pool that really fills up: ENOSPC to the writer, an alert, refusals, recovery.</summary>
public sealed class CapacityTests
{
    [Fact]
    public async Task A_full_pool_answers_enospc_raises_an_alert_and_recovers_after_trim()
    {
        // 1 GiB drive, overcommit 4: a 3 GiB thin volume is allowed, but only about 1 GiB fits.
        await using var node = await SlabNode.StartAsync(driveBytes: 1L << 30);
        await node.CliOkAsync("volume", "create", "filler", "--size", "3", "--fs", "none");
        using var client = await TestNbdClient.ConnectAsync(node.NbdSocket, "filler");
        var chunk = new byte[1 << 20];
        new Random(3).NextBytes(chunk);

        long offset = 0;
        uint error = 0;
        while (offset < client.Size)
        {
            error = await client.WriteAsync(offset, chunk);
            if (error != 0)
            {
                break;
            }

            offset += chunk.Length;
        }

        Assert.Equal(28u, error); // ENOSPC
        Assert.InRange(offset, 512L << 20, 1L << 30);

        var status = await node.CliOkAsync("status");
        Assert.Contains("full", status, StringComparison.Ordinal);
        var refused = await node.CliAsync("volume", "create", "more", "--size", "1");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("is full", refused.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("more", await node.CliOkAsync("volume", "list"), StringComparison.Ordinal);

        // Data written before the pool filled is intact, and trimming frees room for new writes.
        var back = new byte[chunk.Length];
        Assert.Equal(0u, await client.ReadAsync(0, back));
        Assert.Equal(chunk, back);
        Assert.Equal(0u, await client.TrimAsync(0, 512u << 20));
        Assert.Equal(0u, await client.FlushAsync());
        Assert.Equal(0u, await client.WriteAsync(offset, chunk));
        await node.CliOkAsync("volume", "create", "more", "--size", "256M");
    }
}
