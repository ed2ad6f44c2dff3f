using System.Globalization;
using Slab.Api.V1;
using Slab.Cli.Output;
using Slab.Cli.Parsing;

namespace Slab.Cli.Commands;

/// <summary>
/// <c>slabctl volume stats VOL [--interval S] [--count N]</c> (pxctl <c>volume stats</c>): the
/// volume's I/O from its controller where it is attached. The first row averages over the time since
/// the controller opened; each later row (every <c>--interval</c> seconds, like iostat) covers the
/// interval since the row before.
/// </summary>
internal static class VolumeStatsCommand
{
    private static readonly string[] _headers =
        ["TS", "Bytes Read", "Num Reads", "Bytes Written", "Num Writes", "IOPS", "IODepth", "Read Tput", "Write Tput", "Read Lat(usec)", "Write Lat(usec)", "Throttled"];

    public static CommandNode Build() => new("stats", "Show a volume's live I/O statistics (reads, writes, bytes, IOPS, latency, in flight)")
    {
        Details = "Counters come from the volume's controller on the node where it is attached and start when it opens there. " +
            "Without --interval one row (averages since the open); with it a row per interval until --count rows or Ctrl-C.",
        Args = [new ArgSpec("NAME")],
        Flags =
        [
            new() { Name = "interval", Short = 'i', ValueName = "SEC", Description = "refresh every SEC seconds (1-3600), printing the rates of each interval" },
            new() { Name = "count", Short = 'c', ValueName = "N", Description = "stop after N rows (default 1 without --interval, else until Ctrl-C)" },
        ],
        Handler = RunAsync,
    };

    private static async Task<int> RunAsync(CommandContext ctx)
    {
        var interval = ctx.Flag("interval") is { } i ? ParseWhole(i, "--interval", 1, 3600) : 0;
        var count = ctx.Flag("count") is { } c ? ParseWhole(c, "--count", 1, int.MaxValue) : interval == 0 ? 1 : int.MaxValue;
        var request = new VolumeStatsRequest { Volume = ctx.Arg(0) };
        var sample = await ctx.Api.Volumes.StatsAsync(request, ctx.Api.Options());
        if (ctx.Json)
        {
            ctx.Print(sample, _ => { });
        }
        else
        {
            WriteHeader(ctx.Out, sample);
            WriteRow(ctx.Out, previous: null, sample);
        }

        for (var rows = 1; rows < count; rows++)
        {
            await Task.Delay(TimeSpan.FromSeconds(interval));
            var next = await ctx.Api.Volumes.StatsAsync(request, ctx.Api.Options());
            if (ctx.Json)
            {
                ctx.Print(next, _ => { });
            }
            else
            {
                // Counting restarted (a new open elsewhere): the row averages since that open.
                WriteRow(ctx.Out, next.SinceUnixMs == sample.SinceUnixMs && next.Active ? sample : null, next);
            }

            sample = next;
        }

        return CliApp.Success;
    }

    private static void WriteHeader(TextWriter o, VolumeStats s)
    {
        o.WriteLine(s.Active
            ? $"Volume {s.VolumeName} ({s.VolumeId}) on {Formats.Node(s.NodeName, s.NodeId)}, counting since {Formats.Time(s.SinceUnixMs)}; QoS: {IoLimitParser.Describe(s.Limits)}; used {Sizes.Format(s.UsedBytes)}"
            : $"Volume {s.VolumeName} ({s.VolumeId}) is not open on any node (not attached): no I/O to count; used {Sizes.Format(s.UsedBytes)}");
        o.WriteLine(string.Join("  ", _headers.Select((h, i) => i == 0 ? h.PadRight(19) : h)));
    }

    /// <summary>One row: the change from <paramref name="previous"/> (null: from the controller's open) to <paramref name="s"/>.</summary>
    private static void WriteRow(TextWriter o, VolumeStats? previous, VolumeStats s)
    {
        var start = previous?.SampledUnixMs ?? (s.SinceUnixMs > 0 ? s.SinceUnixMs : s.SampledUnixMs);
        var seconds = Math.Max(0.001, (s.SampledUnixMs - start) / 1000.0);
        var reads = Delta(s.Reads, previous?.Reads);
        var writes = Delta(s.Writes, previous?.Writes);
        var throttledUs = s.ThrottledUs - (previous?.ThrottledUs ?? 0);
        string[] cells =
        [
            DateTimeOffset.FromUnixTimeMilliseconds(s.SampledUnixMs).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture),
            Sizes.Format(reads.Bytes),
            Number(reads.Operations),
            Sizes.Format(writes.Bytes),
            Number(writes.Operations),
            Number((ulong)Math.Round((reads.Operations + writes.Operations) / seconds)),
            Number(s.InFlight),
            Sizes.Format((ulong)(reads.Bytes / seconds)) + "/s",
            Sizes.Format((ulong)(writes.Bytes / seconds)) + "/s",
            Latency(reads),
            Latency(writes),
            $"{throttledUs / 1000.0 / seconds:0.0} ms/s",
        ];
        o.WriteLine(string.Join("  ", cells.Select((cell, i) => cell.PadLeft(i == 0 ? 19 : _headers[i].Length))));
    }

    private static IoTotals Delta(IoTotals now, IoTotals? before) => before is null
        ? now
        : new IoTotals
        {
            Operations = now.Operations - before.Operations,
            Bytes = now.Bytes - before.Bytes,
            Errors = now.Errors - before.Errors,
            TotalLatencyUs = now.TotalLatencyUs - before.TotalLatencyUs,
        };

    private static string Latency(IoTotals t) => t.Operations == 0 ? "-" : Number(t.TotalLatencyUs / t.Operations);

    private static string Number(ulong value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static int ParseWhole(string text, string flag, int min, int max)
        => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw new UsageException($"invalid value \"{text}\" for {flag}: must be a whole number from {min} to {max}");
}
