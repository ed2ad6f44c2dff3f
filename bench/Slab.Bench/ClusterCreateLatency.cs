using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using Grpc.Core;
using Grpc.Net.Client;
using Slab.Api.V1;
using V1 = Slab.Api.V1;

namespace Slab.Bench;

/// <summary>
/// <c>dotnet run -c Release -- cluster-create-latency --endpoint HOST:PORT [--count 200] [--concurrency 8]</c>:
/// the latency of <c>Volumes.Create</c> on a running cluster, as a client sees it, through the node
/// at ENDPOINT (a voter that leads, a voter that follows, or a non-voting member: the row says which,
/// from <c>Cluster.Inspect</c> on that node). Creates COUNT volumes of SIZE (default 64 MiB, fs none,
/// one replica placed anywhere) with unique names, one at a time, then COUNT more with CONCURRENCY
/// calls in flight (skipped when CONCURRENCY is 1); every call is timed on its own with a
/// <see cref="Stopwatch"/>, throughput is COUNT over the wall time of the pass. Each pass deletes
/// what it made before the next starts; whatever is left (a failure, Ctrl-C) is deleted on the way out.
/// Prints Markdown table rows on stdout (the header too with <c>--header</c>), progress on stderr;
/// <c>--calls FILE</c> appends one CSV line per create (endpoint, in flight, name, start ms in the pass, ms, ok|error).
/// </summary>
public static class ClusterCreateLatency
{
    private const string Usage =
        "usage: cluster-create-latency --endpoint HOST:PORT [--count N (200)] [--concurrency N (8)] [--size-mib N (64)]\n" +
        "                              [--warmup N (5)] [--label TEXT] [--header] [--calls FILE]";

    private static readonly TimeSpan _deadline = TimeSpan.FromSeconds(60);

    /// <summary>The table header matching the rows <see cref="RunAsync"/> prints.</summary>
    public const string Header =
        "| sent to | role | in flight | creates | min ms | p50 ms | p90 ms | p99 ms | max ms | creates/s | errors | deletes/s |\n" +
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

    private sealed record Options(string Endpoint, int Count, int Concurrency, long SizeBytes, int Warmup, string? Label, bool Header, string? CallsFile);

    private sealed record Pass(int InFlight, double[] LatenciesMs, int Errors, TimeSpan Wall, double DeletesPerSecond);

    public static int Run(string[] args)
    {
        Options options;
        try
        {
            options = Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }

        using var cancellation = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true; // finish in order: the finally blocks delete what was made
            cancellation.Cancel();
        };
        try
        {
            return RunAsync(options, Console.Out, Console.Error, cancellation.Token).GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted");
            return 130;
        }
        catch (RpcException e)
        {
            Console.Error.WriteLine($"error: {e.StatusCode}: {e.Status.Detail}");
            return 1;
        }
    }

    private static async Task<int> RunAsync(Options options, TextWriter output, TextWriter log, CancellationToken cancellationToken)
    {
        using var channel = GrpcChannel.ForAddress($"http://{options.Endpoint}", new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(10) },
            DisposeHttpClient = true,
        });
        var volumes = new V1.Volumes.VolumesClient(channel);
        var cluster = new V1.Cluster.ClusterClient(channel);

        var (node, role) = await DescribeAsync(cluster, cancellationToken).ConfigureAwait(false);
        var label = options.Label ?? $"{node} ({options.Endpoint})";
        log.WriteLine($"cluster-create-latency: {options.Endpoint} is {node}, {role}; {options.Count} creates of {options.SizeBytes >> 20} MiB per pass");

        // Names unique across runs and passes: a run id, the pass, the index.
        var run = Guid.NewGuid().ToString("N")[..8];
        if (options.Warmup > 0)
        {
            // The channel's connection, JIT on both sides, the first proposals: not part of the measurement.
            await MeasureAsync(volumes, options, $"cl-{run}-w", options.Warmup, inFlight: 1, log, cancellationToken).ConfigureAwait(false);
        }

        var passes = new List<Pass> { await MeasureAsync(volumes, options, $"cl-{run}-s", options.Count, inFlight: 1, log, cancellationToken).ConfigureAwait(false) };
        if (options.Concurrency > 1)
        {
            passes.Add(await MeasureAsync(volumes, options, $"cl-{run}-c", options.Count, options.Concurrency, log, cancellationToken).ConfigureAwait(false));
        }

        var (_, roleAfter) = await DescribeAsync(cluster, cancellationToken).ConfigureAwait(false);
        if (roleAfter != role)
        {
            log.WriteLine($"warning: {node} was {role} at the start and is {roleAfter} now: leadership changed during the run");
            role = $"{role} → {roleAfter}";
        }

        if (options.Header)
        {
            output.WriteLine(Header);
        }

        foreach (var pass in passes)
        {
            output.WriteLine(Row(label, role, pass));
        }

        return passes.Any(p => p.Errors > 0) ? 1 : 0;
    }

    /// <summary>The answering node's name and its part in the KVDB (Raft).</summary>
    private static async Task<(string Node, string Role)> DescribeAsync(V1.Cluster.ClusterClient cluster, CancellationToken cancellationToken)
    {
        var info = await cluster.InspectAsync(new ClusterInspectRequest(), Call(cancellationToken)).ConfigureAwait(false);
        if (!info.Clustered)
        {
            return ("single node", "not clustered");
        }

        var local = info.Nodes.FirstOrDefault(n => n.IsLocal) ?? info.Nodes.FirstOrDefault(n => n.Id == info.LocalNodeId);
        if (local is null)
        {
            return (info.LocalNodeId, "unknown");
        }

        var role = local.IsLeader || local.Id == info.LeaderNodeId ? "voter, leader" : local.Kvdb ? "voter, follower" : "non-voter";
        return (local.Name, role);
    }

    /// <summary>
    /// Creates <paramref name="count"/> volumes with <paramref name="inFlight"/> calls outstanding, each
    /// timed, then deletes them (same concurrency, timed as a whole). Deletes whatever it attempted
    /// even when cancelled or failing.
    /// </summary>
    private static async Task<Pass> MeasureAsync(
        V1.Volumes.VolumesClient volumes, Options options, string prefix, int count, int inFlight, TextWriter log, CancellationToken cancellationToken)
    {
        var names = Enumerable.Range(0, count).Select(i => $"{prefix}{inFlight}-{i:D5}").ToArray();
        var latencies = new double[count];
        var starts = new double[count];
        var created = new bool[count];
        var errors = 0;
        var next = -1;
        var deletesPerSecond = 0.0;
        var wall = Stopwatch.StartNew();
        try
        {
            var workers = Enumerable.Range(0, inFlight).Select(async _ =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < count)
                {
                    var request = new CreateVolumeRequest
                    {
                        Name = names[i],
                        Spec = new VolumeSpec { SizeBytes = (ulong)options.SizeBytes, Repl = 1, Fs = "none" },
                    };
                    var start = Stopwatch.GetTimestamp();
                    starts[i] = wall.Elapsed.TotalMilliseconds;
                    try
                    {
                        await volumes.CreateAsync(request, Call(cancellationToken)).ConfigureAwait(false);
                        created[i] = true;
                    }
                    catch (RpcException e) when (e.StatusCode != StatusCode.Cancelled)
                    {
                        Interlocked.Increment(ref errors);
                        log.WriteLine($"create {names[i]}: {e.StatusCode}: {e.Status.Detail}");
                    }

                    latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                }
            }).ToArray();
            await Task.WhenAll(workers).ConfigureAwait(false);
            wall.Stop();
        }
        finally
        {
            // A failed or cancelled create may still have been committed: try every name attempted.
            var attempted = Math.Min(count, next + 1);
            var delete = Stopwatch.StartNew();
            var deleteErrors = await DeleteAsync(volumes, names.Take(attempted).ToArray(), inFlight, log).ConfigureAwait(false);
            delete.Stop();
            var done = created.Count(c => c);
            log.WriteLine($"  {prefix}: {done}/{count} created with {inFlight} in flight in {wall.Elapsed.TotalSeconds:F1} s; " +
                          $"deleted in {delete.Elapsed.TotalSeconds:F1} s{(deleteErrors > 0 ? $", {deleteErrors} deletes failed" : "")}");
            deletesPerSecond = attempted / Math.Max(delete.Elapsed.TotalSeconds, 1e-9);
            if (options.CallsFile is { } file)
            {
                // One line per create: when it started in the pass, how long it took, whether it succeeded.
                var lines = Enumerable.Range(0, attempted).Select(i => string.Create(CultureInfo.InvariantCulture,
                    $"{options.Endpoint},{inFlight},{names[i]},{starts[i]:F3},{latencies[i]:F3},{(created[i] ? "ok" : "error")}"));
                await File.AppendAllLinesAsync(file, lines, CancellationToken.None).ConfigureAwait(false);
            }
        }

        return new Pass(inFlight, [.. latencies.Where((_, i) => created[i])], errors, wall.Elapsed, deletesPerSecond);
    }

    /// <summary>Deletes <paramref name="names"/>, ignoring those that do not exist; returns how many failed otherwise.</summary>
    private static async Task<int> DeleteAsync(V1.Volumes.VolumesClient volumes, string[] names, int inFlight, TextWriter log)
    {
        var failed = 0;
        var next = -1;
        var workers = Enumerable.Range(0, Math.Max(1, inFlight)).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < names.Length)
            {
                try
                {
                    // Not cancellable: cleanup runs after Ctrl-C too.
                    await volumes.DeleteAsync(new DeleteVolumeRequest { Volume = names[i] }, Call(CancellationToken.None)).ConfigureAwait(false);
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
                {
                }
                catch (RpcException e)
                {
                    Interlocked.Increment(ref failed);
                    log.WriteLine($"delete {names[i]}: {e.StatusCode}: {e.Status.Detail}");
                }
            }
        }).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
        return failed;
    }

    private static CallOptions Call(CancellationToken cancellationToken) => new(deadline: DateTime.UtcNow + _deadline, cancellationToken: cancellationToken);

    private static string Row(string label, string role, Pass pass)
    {
        var sorted = pass.LatenciesMs.Order().ToArray();
        var creates = sorted.Length;
        var rate = creates / Math.Max(pass.Wall.TotalSeconds, 1e-9);
        var inv = CultureInfo.InvariantCulture;
        return string.Create(inv,
            $"| {label} | {role} | {pass.InFlight} | {creates} | {Ms(sorted.FirstOrDefault())} | {Ms(Percentile(sorted, 0.50))} | {Ms(Percentile(sorted, 0.90))} | " +
            $"{Ms(Percentile(sorted, 0.99))} | {Ms(sorted.LastOrDefault())} | {rate:F1} | {pass.Errors} | {pass.DeletesPerSecond:F1} |");
    }

    private static string Ms(double value) => value.ToString(value < 10 ? "F2" : "F1", CultureInfo.InvariantCulture);

    /// <summary>Nearest-rank percentile of sorted values (0 when empty).</summary>
    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static Options Parse(string[] args)
    {
        string? endpoint = null, label = null, calls = null;
        int count = 200, concurrency = 8, sizeMib = 64, warmup = 5;
        var header = false;
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Number(int min) => int.TryParse(Value(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= min
                ? n
                : throw new ArgumentException($"{args[i - 1]} needs a whole number >= {min}");
            switch (args[i])
            {
                case "--endpoint": endpoint = Value(); break;
                case "--count": count = Number(1); break;
                case "--concurrency": concurrency = Number(1); break;
                case "--size-mib": sizeMib = Number(1); break;
                case "--warmup": warmup = Number(0); break;
                case "--label": label = Value(); break;
                case "--header": header = true; break;
                case "--calls": calls = Value(); break;
                default: throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }

        if (string.IsNullOrEmpty(endpoint))
        {
            throw new ArgumentException("--endpoint HOST:PORT is required");
        }

        // Accept http://HOST:PORT as well.
        endpoint = endpoint.StartsWith("http://", StringComparison.Ordinal) ? endpoint["http://".Length..].TrimEnd('/') : endpoint;
        return new Options(endpoint, count, concurrency, (long)sizeMib << 20, warmup, label, header, calls);
    }
}
