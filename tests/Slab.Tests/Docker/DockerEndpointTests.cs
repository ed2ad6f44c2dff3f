using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Slab.Api.Docker;
using Slab.Common;
using Xunit;
using V1 = Slab.Api.V1;

namespace Slab.Tests.Docker;

/// <summary>
/// The plugin protocol handler over a fake volume API and mount table: Docker's JSON shapes,
/// malformed requests, mount counting by ID, the IDs surviving a restart, Remove of a mounted volume.
/// </summary>
public sealed class DockerEndpointTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "dkunit-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly FakeApi _api = new();
    private readonly DockerPluginOptions _options;

    public DockerEndpointTests()
    {
        _options = new DockerPluginOptions { SocketPath = Path.Combine(_dir, "p.sock"), StateDirectory = Path.Combine(_dir, "docker"), ApiSocketPath = "/nonexistent" };
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private DockerPluginHandler NewHandler()
        => new(_api, DockerMountRegistry.Load(_options.MountIdFile), _options, NullLogger<DockerPluginHandler>.Instance, _api.Mounted.Contains);

    private static async Task<(int Status, JsonElement Body)> CallAsync(DockerPluginHandler handler, string path, string body)
    {
        var reply = await handler.HandleAsync(path, Encoding.UTF8.GetBytes(body), CancellationToken.None);
        using var json = JsonDocument.Parse(reply.Body);
        return (reply.Status, json.RootElement.Clone());
    }

    private static string Err(JsonElement body) => body.TryGetProperty("Err", out var err) ? err.GetString()! : "";

    [Fact]
    public async Task ActivateAndCapabilitiesAnswerInDockersShape()
    {
        var handler = NewHandler();
        var (status, body) = await CallAsync(handler, "/Plugin.Activate", "");
        Assert.Equal(200, status);
        Assert.Equal("VolumeDriver", body.GetProperty("Implements")[0].GetString());
        (status, body) = await CallAsync(handler, "/VolumeDriver.Capabilities", "{}");
        Assert.Equal("global", body.GetProperty("Capabilities").GetProperty("Scope").GetString());
    }

    [Theory]
    [InlineData("/VolumeDriver.Create", "{\"Name\":")]
    [InlineData("/VolumeDriver.Create", "not json")]
    [InlineData("/VolumeDriver.Create", "")]
    [InlineData("/VolumeDriver.Create", "null")]
    [InlineData("/VolumeDriver.Create", "[]")]
    [InlineData("/VolumeDriver.Create", "{\"Name\":7}")]
    [InlineData("/VolumeDriver.Create", "{\"Name\":null}")]
    [InlineData("/VolumeDriver.Create", "{\"Opts\":{}}")]
    [InlineData("/VolumeDriver.Create", "{\"Name\":\"v\",\"Opts\":{\"size\":2}}")]
    [InlineData("/VolumeDriver.Create", "{\"Name\":\"v\",\"Opts\":[\"size=2\"]}")]
    [InlineData("/VolumeDriver.Create", "{\"Name\":\"v\",\"Name\":\"w\"}")]
    [InlineData("/VolumeDriver.Mount", "{\"Name\":\"v\"}")]
    [InlineData("/VolumeDriver.Mount", "{\"Name\":\"v\",\"ID\":{}}")]
    [InlineData("/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":true}")]
    [InlineData("/VolumeDriver.Get", "{\"Name\":[\"v\"]}")]
    [InlineData("/VolumeDriver.Remove", "\"v\"")]
    public async Task MalformedRequestsAreRefusedWithAnErr(string path, string body)
    {
        var (status, reply) = await CallAsync(NewHandler(), path, body);
        Assert.Equal(400, status);
        Assert.Contains("not the expected JSON", Err(reply), StringComparison.Ordinal);
        Assert.Empty(_api.Calls);
    }

    [Fact]
    public async Task UnknownMembersAreSkippedAndUnknownCallsAre404()
    {
        var handler = NewHandler();
        var (status, body) = await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\",\"Opts\":null,\"Future\":{\"x\":[1]}}");
        Assert.Equal(200, status);
        Assert.Equal("", Err(body));
        Assert.True(_api.Volumes.ContainsKey("v"));
        (status, body) = await CallAsync(handler, "/VolumeDriver.Frobnicate", "{}");
        Assert.Equal(404, status);
        Assert.Contains("unknown call", Err(body), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateOfAnExistingVolumeIsANoOpButBadOptionsAreStillRefused()
    {
        var handler = NewHandler();
        Assert.Equal("", Err((await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\",\"Opts\":{\"size\":\"2G\",\"repl\":\"1\"}}")).Body));
        Assert.Equal(2UL << 30, _api.Volumes["v"].Spec.SizeBytes);
        Assert.Equal("", Err((await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\"}")).Body));
        var (status, body) = await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\",\"Opts\":{\"repl\":\"7\"}}");
        Assert.Equal(200, status);
        Assert.Contains("1, 2 or 3", Err(body), StringComparison.Ordinal);
        Assert.Single(_api.Calls, c => c.StartsWith("create", StringComparison.Ordinal));
    }

    [Fact]
    public async Task SlabRefusalsReachDockerAsErr()
    {
        _api.Refuse = new SlabException(SlabErrorCode.ResourceExhausted, "pool full: free space or add a drive");
        var (status, body) = await CallAsync(NewHandler(), "/VolumeDriver.Create", "{\"Name\":\"v\"}");
        Assert.Equal(200, status);
        Assert.Equal("pool full: free space or add a drive", Err(body));
    }

    [Fact]
    public async Task UnexpectedFailuresAreAnErrNotACrash()
    {
        _api.Throw = new InvalidOperationException("boom");
        var (status, body) = await CallAsync(NewHandler(), "/VolumeDriver.List", "{}");
        Assert.Equal(200, status);
        Assert.Contains("boom", Err(body), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MountsAreCountedByIdAndTheLastUnmountDetaches()
    {
        var handler = NewHandler();
        await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"name=v,size=2G\"}");
        var path = _options.MountPointOf("v");
        var (_, first) = await CallAsync(handler, "/VolumeDriver.Mount", "{\"Name\":\"name=v,size=2G\",\"ID\":\"a\"}");
        Assert.Equal(path, first.GetProperty("Mountpoint").GetString());
        var (_, second) = await CallAsync(handler, "/VolumeDriver.Mount", "{\"Name\":\"v\",\"ID\":\"b\"}");
        Assert.Equal(path, second.GetProperty("Mountpoint").GetString());
        Assert.Single(_api.Calls, c => c == "mount v " + path);
        Assert.Equal(path, (await CallAsync(handler, "/VolumeDriver.Path", "{\"Name\":\"v\"}")).Body.GetProperty("Mountpoint").GetString());

        // A mounted volume is not removed.
        Assert.Contains("mounted by 2 container", Err((await CallAsync(handler, "/VolumeDriver.Remove", "{\"Name\":\"v\"}")).Body), StringComparison.Ordinal);

        await CallAsync(handler, "/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":\"a\"}");
        await CallAsync(handler, "/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":\"a\"}"); // repeated: no effect
        Assert.DoesNotContain("unmount v " + path, _api.Calls);
        await CallAsync(handler, "/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":\"b\"}");
        Assert.Contains("unmount v " + path, _api.Calls);
        Assert.Contains("detach v", _api.Calls);
        Assert.Equal("", (await CallAsync(handler, "/VolumeDriver.Path", "{\"Name\":\"v\"}")).Body.GetProperty("Mountpoint").GetString());
        Assert.Equal("", Err((await CallAsync(handler, "/VolumeDriver.Remove", "{\"Name\":\"v\"}")).Body));
        Assert.False(_api.Volumes.ContainsKey("v"));
    }

    [Fact]
    public async Task MountIdsSurviveARestartAndTheVolumeIsMountedAgain()
    {
        var handler = NewHandler();
        await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\"}");
        await CallAsync(handler, "/VolumeDriver.Mount", "{\"Name\":\"v\",\"ID\":\"a\"}");
        await CallAsync(handler, "/VolumeDriver.Mount", "{\"Name\":\"v\",\"ID\":\"b\"}");

        // slabd stops: its shutdown unmounts everything; a new process loads the IDs.
        _api.Mounted.Clear();
        _api.Calls.Clear();
        var restarted = NewHandler();
        await restarted.RestoreMountsAsync(CancellationToken.None);
        Assert.Equal(["mount v " + _options.MountPointOf("v")], _api.Calls);

        await CallAsync(restarted, "/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":\"a\"}");
        Assert.DoesNotContain("detach v", _api.Calls);
        await CallAsync(restarted, "/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":\"b\"}");
        Assert.Contains("detach v", _api.Calls);
        Assert.DoesNotContain("\"v\"", File.ReadAllText(_options.MountIdFile), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnUnknownIdDetachesNothingItDidNotMount()
    {
        var handler = NewHandler();
        await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\"}");
        Assert.Equal("", Err((await CallAsync(handler, "/VolumeDriver.Unmount", "{\"Name\":\"v\",\"ID\":\"never\"}")).Body));
        Assert.DoesNotContain(_api.Calls, c => c.StartsWith("unmount", StringComparison.Ordinal) || c.StartsWith("detach", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AFailedMountCountsNothing()
    {
        var handler = NewHandler();
        await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\"}");
        _api.Refuse = new SlabException(SlabErrorCode.FailedPrecondition, "volume 'v' is attached on node-1; detach it there first");
        var (_, body) = await CallAsync(handler, "/VolumeDriver.Mount", "{\"Name\":\"v\",\"ID\":\"a\"}");
        Assert.Contains("attached on node-1", Err(body), StringComparison.Ordinal);
        _api.Refuse = null;
        Assert.Equal("", Err((await CallAsync(handler, "/VolumeDriver.Remove", "{\"Name\":\"v\"}")).Body));
    }

    [Fact]
    public void TheMountIdFileIsReplacedWholeAndACorruptOneStopsStartUp()
    {
        var registry = DockerMountRegistry.Load(_options.MountIdFile);
        registry.Set("v", ["a", "b"]);
        registry.Set("w", ["c"]);
        registry.Set("w", []);
        File.WriteAllText(_options.MountIdFile + ".tmp-deadbeef", "{\"Volumes\":{\"half"); // a crash mid-write
        var reloaded = DockerMountRegistry.Load(_options.MountIdFile);
        Assert.Equal(["a", "b"], reloaded.IdsOf("v").Order(StringComparer.Ordinal));
        Assert.Empty(reloaded.IdsOf("w"));
        Assert.False(File.Exists(_options.MountIdFile + ".tmp-deadbeef"));

        File.WriteAllText(_options.MountIdFile, "{\"Volumes\":[1]}");
        Assert.Equal(SlabErrorCode.Internal, Assert.Throws<SlabException>(() => DockerMountRegistry.Load(_options.MountIdFile)).Code);
    }

    [Fact]
    public async Task GetAndListDescribeVolumes()
    {
        var handler = NewHandler();
        await CallAsync(handler, "/VolumeDriver.Create", "{\"Name\":\"v\",\"Opts\":{\"size\":\"3G\",\"label\":\"app=pg\"}}");
        var (_, get) = await CallAsync(handler, "/VolumeDriver.Get", "{\"Name\":\"name=v,size=3G\"}");
        var volume = get.GetProperty("Volume");
        Assert.Equal("name=v,size=3G", volume.GetProperty("Name").GetString());
        Assert.Equal(3L << 30, volume.GetProperty("Status").GetProperty("sizeBytes").GetInt64());
        Assert.Equal("app=pg", volume.GetProperty("Status").GetProperty("labels").GetString());
        var (_, missing) = await CallAsync(handler, "/VolumeDriver.Get", "{\"Name\":\"nope\"}");
        Assert.Contains("does not exist", Err(missing), StringComparison.Ordinal);
        var (_, list) = await CallAsync(handler, "/VolumeDriver.List", "");
        Assert.Equal("v", list.GetProperty("Volumes")[0].GetProperty("Name").GetString());
    }

    /// <summary>Volumes in memory; mount points in a set; every call recorded.</summary>
    private sealed class FakeApi : ISlabVolumeApi
    {
        public Dictionary<string, V1.Volume> Volumes { get; } = [];

        public HashSet<string> Mounted { get; } = [];

        public List<string> Calls { get; } = [];

        public SlabException? Refuse { get; set; }

        public Exception? Throw { get; set; }

        public Task<V1.Volume?> FindAsync(string name, CancellationToken cancellationToken)
        {
            Check();
            return Task.FromResult(Volumes.GetValueOrDefault(name));
        }

        public Task<IReadOnlyList<V1.Volume>> ListAsync(CancellationToken cancellationToken)
        {
            Check();
            return Task.FromResult<IReadOnlyList<V1.Volume>>([.. Volumes.Values]);
        }

        public Task<V1.Volume> CreateAsync(string name, V1.VolumeSpec spec, CancellationToken cancellationToken)
        {
            Record($"create {name}");
            var volume = new V1.Volume { Id = Guid.NewGuid().ToString("N"), Name = name, Spec = spec, State = "up", CreatedUnixMs = 1 };
            Volumes[name] = volume;
            return Task.FromResult(volume);
        }

        public Task<V1.Volume> CloneAsync(string source, string name, IReadOnlyDictionary<string, string> labels, CancellationToken cancellationToken)
        {
            Record($"clone {source} {name}");
            var volume = new V1.Volume { Id = Guid.NewGuid().ToString("N"), Name = name, Spec = Volumes[source].Spec, Source = source };
            Volumes[name] = volume;
            return Task.FromResult(volume);
        }

        public Task DeleteAsync(string name, CancellationToken cancellationToken)
        {
            Record($"delete {name}");
            Volumes.Remove(name);
            return Task.CompletedTask;
        }

        public Task MountAsync(string name, string path, CancellationToken cancellationToken)
        {
            Record($"mount {name} {path}");
            Mounted.Add(path);
            return Task.CompletedTask;
        }

        public Task UnmountAsync(string name, string path, CancellationToken cancellationToken)
        {
            Record($"unmount {name} {path}");
            Mounted.Remove(path);
            return Task.CompletedTask;
        }

        public Task DetachAsync(string name, CancellationToken cancellationToken)
        {
            Record($"detach {name}");
            return Task.CompletedTask;
        }

        private void Record(string call)
        {
            Check();
            Calls.Add(call);
        }

        private void Check()
        {
            if (Refuse is not null)
            {
                throw Refuse;
            }

            if (Throw is not null)
            {
                throw Throw;
            }
        }
    }
}
