using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Xunit;

namespace Slab.Tests.Metrics;

/// <summary>One sample of a scrape, as the reference parser read it.</summary>
public sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value)
{
    public bool Has(params (string Key, string Value)[] labels) => labels.All(l => Labels.TryGetValue(l.Key, out var v) && v == l.Value);
}

/// <summary>
/// A /metrics exposition parsed by Prometheus' own Python client (Debian's python3-prometheus-client,
/// through <c>parse_prometheus.py</c>), not by anything of ours: what it accepts, Prometheus accepts.
/// </summary>
public sealed class PrometheusScrape
{
    /// <summary>Debian's interpreter, which has the package (the one on PATH may not).</summary>
    public const string Python = "/usr/bin/python3";

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    private readonly Dictionary<string, string> _types;

    private PrometheusScrape(Dictionary<string, string> types, List<PrometheusSample> samples, string text)
    {
        _types = types;
        Samples = samples;
        Text = text;
    }

    public IReadOnlyList<PrometheusSample> Samples { get; }

    /// <summary>The exposition as served.</summary>
    public string Text { get; }

    /// <summary>GETs <paramref name="url"/>, checks the status and content type, parses the body.</summary>
    public static async Task<PrometheusScrape> FetchAsync(string url)
    {
        using var response = await Http.GetAsync(url);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {url}: {(int)response.StatusCode}\n{body}");
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        return await ParseAsync(body);
    }

    /// <summary>Parses an exposition; fails the test when the reference parser refuses it.</summary>
    public static async Task<PrometheusScrape> ParseAsync(string text)
    {
        var script = Path.Combine(AppContext.BaseDirectory, "Metrics", "parse_prometheus.py");
        var info = new ProcessStartInfo(Python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(script);
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"cannot start {Python}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(text);
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"the Prometheus parser refused the exposition: {await stderr}\n{text}");

        using var json = JsonDocument.Parse(await stdout);
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        var samples = new List<PrometheusSample>();
        foreach (var family in json.RootElement.GetProperty("families").EnumerateArray())
        {
            types[family.GetProperty("name").GetString()!] = family.GetProperty("type").GetString()!;
            foreach (var sample in family.GetProperty("samples").EnumerateArray())
            {
                var labels = sample.GetProperty("labels").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!, StringComparer.Ordinal);
                var value = sample.GetProperty("value");
                samples.Add(new PrometheusSample(
                    sample.GetProperty("name").GetString()!,
                    labels,
                    value.ValueKind == JsonValueKind.Number ? value.GetDouble() : double.Parse(value.GetString()!, CultureInfo.InvariantCulture)));
            }
        }

        return new PrometheusScrape(types, samples, text);
    }

    /// <summary>The family's type (counter, gauge, histogram, ...) as the parser names it (counters without <c>_total</c>); null when absent.</summary>
    public string? TypeOf(string family) => _types.GetValueOrDefault(family);

    /// <summary>The samples named <paramref name="name"/> carrying these labels (and maybe others).</summary>
    public IReadOnlyList<PrometheusSample> Find(string name, params (string Key, string Value)[] labels)
        => [.. Samples.Where(s => s.Name == name && s.Has(labels))];

    /// <summary>The one sample named <paramref name="name"/> with these labels; fails the test when there is none or several.</summary>
    public double Value(string name, params (string Key, string Value)[] labels)
    {
        var found = Find(name, labels);
        Assert.True(found.Count == 1, $"{found.Count} samples {name}{{{string.Join(',', labels.Select(l => $"{l.Key}={l.Value}"))}}} in:\n{Text}");
        return found[0].Value;
    }
}
