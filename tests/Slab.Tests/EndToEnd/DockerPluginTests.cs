using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.EndToEnd;

/// <summary>One slabd serving the Docker plugin on a test socket and one private dockerd that knows it.</summary>
public sealed class DockerFixture : IAsyncLifetime
{
    private SlabNode? _node;
    private Dockerd? _docker;

    /// <summary>Outside the node's root, which is made when the node starts.</summary>
    public string PluginDirectory { get; } = Path.Combine("/tmp", "dkp-" + Guid.NewGuid().ToString("N")[..8]);

    public string PluginSocket => Path.Combine(PluginDirectory, "slab.sock");

    public SlabNode Node => _node ?? throw new InvalidOperationException("not started");

    public Dockerd Docker => _docker ?? throw new InvalidOperationException("not started");

    public string[] NodeArguments => ["--docker-plugin-socket", PluginSocket];

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(PluginDirectory);
        _node = await SlabNode.StartAsync(16L << 30, NodeArguments);
        _docker = await Dockerd.StartAsync(PluginSocket);
    }

    public async Task DisposeAsync()
    {
        if (_docker is not null)
        {
            await _docker.DisposeAsync();
        }

        if (_node is not null)
        {
            await _node.DisposeAsync();
        }

        Directory.Delete(PluginDirectory, recursive: true);
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DockerCollection
{
    public const string Name = "docker";
}

/// <summary>
/// Docker's volume plugin end to end: the real docker CLI and a real dockerd (Debian docker.io)
/// against a real slabd; containers from a busybox image.
/// </summary>
[Collection(DockerCollection.Name)]
public sealed class DockerPluginTests(DockerFixture fixture) : IClassFixture<DockerFixture>
{
    private SlabNode Node => fixture.Node;

    private Dockerd Docker => fixture.Docker;

    private static string Unique(string prefix) => LocalCluster.UniqueName(prefix);

    [Fact]
    public async Task CreateListInspectRemove()
    {
        var name = Unique("dv");
        await Docker.OkAsync("volume", "create", "-d", Docker.Driver, "--opt", "size=2G", "--opt", "repl=1", "--opt", "label=app=test", name);

        var list = await Docker.OkAsync("volume", "ls", "--format", "{{.Driver}} {{.Name}}");
        Assert.Contains($"{Docker.Driver} {name}", list, StringComparison.Ordinal);

        using (var inspect = JsonDocument.Parse(await Docker.OkAsync("volume", "inspect", name)))
        {
            var volume = inspect.RootElement[0];
            Assert.Equal(Docker.Driver, volume.GetProperty("Driver").GetString());
            Assert.Equal("global", volume.GetProperty("Scope").GetString());
            var status = volume.GetProperty("Status");
            Assert.Equal(2L << 30, status.GetProperty("sizeBytes").GetInt64());
            Assert.Equal("up", status.GetProperty("state").GetString());
            Assert.Equal("app=test", status.GetProperty("labels").GetString());
        }

        var slab = LocalCluster.First(await Node.CliJsonAsync("volume", "inspect", name));
        Assert.Equal((2L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture), slab.GetProperty("spec").GetProperty("sizeBytes").GetString());

        await Docker.OkAsync("volume", "rm", name);
        Assert.DoesNotContain(name, await Docker.OkAsync("volume", "ls", "-q"), StringComparison.Ordinal);
        Assert.NotEqual(0, (await Node.CliAsync("volume", "inspect", name)).ExitCode);
    }

    [Fact]
    public async Task DataSurvivesContainersDockerdRestartAndSlabdRestart()
    {
        var name = Unique("dd");
        await Docker.OkAsync("volume", "create", "-d", Docker.Driver, "--opt", "size=1G", name);
        var write = await Docker.RunContainerAsync(["-v", $"{name}:/data"], "sh", "-c", "echo first > /data/f && sync");
        Assert.True(write.ExitCode == 0, write.ToString());

        // A second container (the first is removed) reads it.
        Assert.Equal("first", (await ReadAsync(name, "/data/f")).Trim());

        await Docker.RestartAsync();
        Assert.Equal("first", (await ReadAsync(name, "/data/f")).Trim());

        Assert.Equal(0, await Node.StopAsync());
        await Node.StartProcessAsync(fixture.NodeArguments);
        Assert.Equal("first", (await ReadAsync(name, "/data/f")).Trim());

        // Detached again after each container.
        var slab = LocalCluster.First(await Node.CliJsonAsync("volume", "inspect", name));
        Assert.False(slab.TryGetProperty("attachment", out _), slab.ToString());
    }

    [Fact]
    public async Task InlineSpecCreatesOnFirstUse()
    {
        var name = Unique("di");
        var run = await Docker.RunContainerAsync(
            ["--volume-driver", Docker.Driver, "-v", $"name={name},size=3G,repl=1,fs=xfs:/data"],
            "sh", "-c", "echo inline > /data/f && sync && cat /data/f");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("inline", run.Stdout.Trim());

        var slab = LocalCluster.First(await Node.CliJsonAsync("volume", "inspect", name));
        Assert.Equal((3L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture), slab.GetProperty("spec").GetProperty("sizeBytes").GetString());
        Assert.Equal("xfs", slab.GetProperty("spec").GetProperty("fs").GetString());

        // The same inline spec used again finds the volume and its data.
        var again = await Docker.RunContainerAsync(["--volume-driver", Docker.Driver, "-v", $"name={name},size=3G:/data"], "cat", "/data/f");
        Assert.Equal("inline", again.Stdout.Trim());
    }

    [Fact]
    public async Task ParentMakesAClone()
    {
        var source = Unique("dp");
        await Docker.OkAsync("volume", "create", "-d", Docker.Driver, "--opt", "size=1G", "--opt", "io_priority=medium", "--opt", "block_size=4K", source);
        var write = await Docker.RunContainerAsync(["-v", $"{source}:/data"], "sh", "-c", "echo original > /data/f && sync");
        Assert.True(write.ExitCode == 0, write.ToString());

        var clone = Unique("dp");
        await Docker.OkAsync("volume", "create", "-d", Docker.Driver, "--opt", "parent=" + source, "--opt", "label=copy=yes", clone);
        Assert.Equal("original", (await ReadAsync(clone, "/data/f")).Trim());
        var slab = LocalCluster.First(await Node.CliJsonAsync("volume", "inspect", clone));
        Assert.Equal(source, slab.GetProperty("source").GetString());

        var refused = await Docker.RunAsync("volume", "create", "-d", Docker.Driver, "--opt", "parent=" + source, "--opt", "size=5G", Unique("dp"));
        Assert.Contains("a clone takes size", refused.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BadOptionsGiveDockersErrorWithOurMessage()
    {
        var bad = await Docker.RunAsync("volume", "create", "-d", Docker.Driver, "--opt", "size=lots", Unique("db"));
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("size=lots: must be a whole number of GiB or have a unit", bad.Stderr, StringComparison.Ordinal);

        var zones = await Docker.RunAsync("volume", "create", "-d", Docker.Driver, "--opt", "zones=z1", Unique("db"));
        Assert.Contains("this slabd runs without a cluster", zones.Stderr, StringComparison.Ordinal); // slabd's refusal: zones need a cluster

        var schedule = await Docker.RunAsync("volume", "create", "-d", Docker.Driver, "--opt", "snap_schedule=daily", Unique("db"));
        Assert.Contains("snapshot schedules do not exist", schedule.Stderr, StringComparison.Ordinal);

        // A single node has no second node for a second replica: slabd's own refusal reaches Docker.
        var repl = await Docker.RunAsync("volume", "create", "-d", Docker.Driver, "--opt", "repl=2", Unique("db"));
        Assert.NotEqual(0, repl.ExitCode);
        Assert.Contains("cluster", repl.Stderr, StringComparison.Ordinal);

        var inline = await Docker.RunContainerAsync(["--volume-driver", Docker.Driver, "-v", $"name={Unique("db")},colour=blue:/data"], "true");
        Assert.NotEqual(0, inline.ExitCode);
        Assert.Contains("unknown option colour", inline.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ContainersShareOneMountCountedByIdAcrossASlabdRestart()
    {
        var name = Unique("dm");
        await Docker.OkAsync("volume", "create", "-d", Docker.Driver, name);
        var holder = Unique("hold");
        await Docker.OkAsync("run", "-d", "--name", holder, "--network", "none", "-v", $"{name}:/data", Dockerd.Image, "sh", "-c", "echo held > /data/h && sync && sleep 600");
        await Poll.UntilAsync(async () => (await Docker.RunAsync("exec", holder, "cat", "/data/h")).Stdout.Trim() == "held", TimeSpan.FromSeconds(60), "the holder's write");

        // A second container on the same host shares the mount; its end leaves the holder's.
        Assert.Equal("held", (await ReadAsync(name, "/data/h")).Trim());
        var mountpoint = await PathAsync(name);
        Assert.NotEqual("", mountpoint);
        Assert.Equal("held", (await File.ReadAllTextAsync(Path.Combine(mountpoint, "h"))).Trim());

        // Remove is refused while Docker has it mounted (docker itself refuses first; ask the plugin).
        var remove = await PluginCallAsync("/VolumeDriver.Remove", $"{{\"Name\":\"{name}\"}}");
        Assert.Contains("is mounted by 1 container", remove.Body, StringComparison.Ordinal);

        // A slabd restart keeps the count: the volume is mounted again where Docker expects it.
        Assert.Equal(0, await Node.StopAsync());
        await Node.StartProcessAsync(fixture.NodeArguments);
        await Poll.UntilAsync(async () => await PathAsync(name) == mountpoint, TimeSpan.FromSeconds(60), "the volume mounted again after the restart");
        Assert.Equal("held", (await File.ReadAllTextAsync(Path.Combine(mountpoint, "h"))).Trim());

        // The holder's end is the last mount ID: unmounted and detached.
        await Docker.OkAsync("rm", "-f", holder);
        await Poll.UntilAsync(async () => await PathAsync(name) == "", TimeSpan.FromSeconds(60), "the holder's unmount");
        var slab = LocalCluster.First(await Node.CliJsonAsync("volume", "inspect", name));
        Assert.False(slab.TryGetProperty("attachment", out _), slab.ToString());
    }

    [Fact]
    public async Task AfterASlabdCrashTheMountCountsAreRebuilt()
    {
        var name = Unique("dk");
        await Docker.OkAsync("volume", "create", "-d", Docker.Driver, name);
        var write = await Docker.RunContainerAsync(["-v", $"{name}:/data"], "sh", "-c", "echo before-crash > /data/f && sync");
        Assert.True(write.ExitCode == 0, write.ToString());
        var holder = Unique("hold");
        await Docker.OkAsync("run", "-d", "--name", holder, "--network", "none", "-v", $"{name}:/data", Dockerd.Image, "sleep", "600");
        var mountpoint = await PathAsync(name);
        Assert.NotEqual("", mountpoint);

        await Node.KillAsync();
        await Node.StartProcessAsync(fixture.NodeArguments);
        await Poll.UntilAsync(async () => await PathAsync(name) == mountpoint, TimeSpan.FromSeconds(60), "the volume mounted again after the crash");
        Assert.Equal("before-crash", (await File.ReadAllTextAsync(Path.Combine(mountpoint, "f"))).Trim());

        await Docker.OkAsync("rm", "-f", holder);
        await Poll.UntilAsync(async () => await PathAsync(name) == "", TimeSpan.FromSeconds(60), "the holder's unmount");
        Assert.Equal("before-crash", (await ReadAsync(name, "/data/f")).Trim());
    }

    [Fact]
    public async Task MalformedRequestsOnTheSocketAreRefusedAndSlabdStaysUp()
    {
        var (status, body) = await PluginCallAsync("/VolumeDriver.Create", "{\"Name\":");
        Assert.Equal(400, status);
        Assert.Contains("not the expected JSON", body, StringComparison.Ordinal);

        (status, body) = await PluginCallAsync("/VolumeDriver.Mount", "{\"Name\":\"x\",\"ID\":42}");
        Assert.Equal(400, status);

        (status, body) = await PluginCallAsync("/VolumeDriver.Create", "{\"Name\":\"" + new string('a', 2 << 20) + "\"}");
        Assert.Equal(413, status);

        (status, body) = await PluginCallAsync("/VolumeDriver.Get", "{\"Name\":\"../../etc\"}");
        Assert.Equal(200, status);
        Assert.Contains("invalid volume name", body, StringComparison.Ordinal);

        (status, _) = await PluginCallAsync("/slab.v1.Volumes/Enumerate", "{}");
        Assert.Equal(404, status); // gRPC is not served on the plugin socket

        Assert.NotNull(Node.Pid);
        Assert.Equal(0, (await Docker.RunAsync("volume", "ls")).ExitCode);
        Assert.Contains("\"Implements\":[\"VolumeDriver\"]", (await PluginCallAsync("/Plugin.Activate", "")).Body, StringComparison.Ordinal);
    }

    private async Task<string> ReadAsync(string volume, string file)
    {
        var read = await Docker.RunContainerAsync(["-v", $"{volume}:/data"], "cat", file);
        Assert.True(read.ExitCode == 0, $"{read}\nslabd log:\n{Node.Log}");
        return read.Stdout;
    }

    private async Task<string> PathAsync(string volume)
    {
        var (_, body) = await PluginCallAsync("/VolumeDriver.Path", $"{{\"Name\":\"{volume}\"}}");
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("Mountpoint").GetString()!;
    }

    /// <summary>One HTTP/1.1 POST on the plugin socket, as Docker makes it.</summary>
    private async Task<(int Status, string Body)> PluginCallAsync(string path, string body)
    {
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(fixture.PluginSocket), token);
                return new NetworkStream(socket, ownsSocket: true);
            },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromMinutes(2) };
        using var content = new StringContent(body, Encoding.UTF8, "application/vnd.docker.plugins.v1.2+json");
        using var response = await client.PostAsync(new Uri("http://plugin" + path), content);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }
}
