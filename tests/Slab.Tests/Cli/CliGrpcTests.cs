using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Slab.Api.V1;
using Xunit;

namespace Slab.Tests.Cli;

/// <summary>slabctl against an in-process fake slabd over a real unix socket (and TCP).</summary>
public sealed class CliGrpcTests : IAsyncLifetime
{
    private const ulong GiB = 1UL << 30;
    private FakeSlabServer _server = null!;

    public async Task InitializeAsync() => _server = await FakeSlabServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<CliRun> Run(string commandLine) => CliRunner.RunAsync(_server.UnixEndpoint, CliRunner.Split(commandLine));

    private T Single<T>(string method)
    {
        var call = Assert.Single(_server.State.Calls);
        Assert.Equal(method, call.Method);
        return Assert.IsType<T>(call.Request);
    }

    private static void AssertOk(CliRun run)
    {
        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}: {run.Err}");
        Assert.Equal("", run.Err);
    }

    private static void AssertFailed(CliRun run, string error)
    {
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"Error: {error}\n", run.Err.ReplaceLineEndings("\n"));
    }

    [Fact]
    public async Task Create_sends_the_spec_and_prints_the_id()
    {
        var run = await Run("volume create web --size 20 --repl 3 --fs xfs --io_priority low --label app=web,tier=1 -l team=a");
        AssertOk(run);
        Assert.Equal("Volume successfully created: vol-web\n", run.Out.ReplaceLineEndings("\n"));
        var request = Single<CreateVolumeRequest>("Create");
        Assert.Equal("web", request.Name);
        Assert.Equal(20 * GiB, request.Spec.SizeBytes);
        Assert.Equal(3u, request.Spec.Repl);
        Assert.Equal("xfs", request.Spec.Fs);
        Assert.Equal(IoPriority.Low, request.Spec.IoPriority);
        Assert.Equal(new Dictionary<string, string> { ["app"] = "web", ["tier"] = "1", ["team"] = "a" }, request.Spec.Labels);
    }

    [Fact]
    public async Task Create_defaults_leave_the_choice_to_the_server_and_json_is_the_volume()
    {
        var run = await Run("v c web -s 512M -j");
        AssertOk(run);
        using var doc = JsonDocument.Parse(run.Out);
        Assert.Equal("web", doc.RootElement.GetProperty("name").GetString());
        Assert.Equal((512UL << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), doc.RootElement.GetProperty("spec").GetProperty("sizeBytes").GetString());
        var request = Single<CreateVolumeRequest>("Create");
        Assert.Equal(0u, request.Spec.Repl);
        Assert.Equal("", request.Spec.Fs);
        Assert.Equal(IoPriority.Unspecified, request.Spec.IoPriority);
    }

    [Fact]
    public async Task Server_errors_are_printed_verbatim_with_exit_1()
    {
        var bad = await Run("volume create bad! --size 1");
        AssertFailed(bad, "invalid volume name \"bad!\": use letters, digits, '-', '_' and '.'");
        Assert.Equal("", bad.Out);

        AssertFailed(await Run("volume create db --size 1"), "volume \"db\" already exists");
        AssertFailed(await Run("volume inspect missing"), "volume \"missing\" not found");
        AssertFailed(await Run("volume delete db"), "volume \"db\" is attached on node-2; detach it first");
        AssertFailed(await Run("volume update db --size 1"), "volumes cannot shrink");
        AssertFailed(await Run("volume restore db --snapshot nope"), "snapshot \"nope\" of volume \"db\" not found");
        AssertFailed(await Run("host detach db"), "volume \"db\" is mounted at /mnt/db; unmount it first");
        AssertFailed(await Run("-j host attach missing"), "volume \"missing\" not found");
    }

    [Fact]
    public async Task List_prints_pxctls_table()
    {
        var run = await Run("volume list");
        AssertOk(run);
        var lines = run.Out.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^ID\s+NAME\s+SIZE\s+HA\s+SHARED\s+ENCRYPTED\s+IO_PRIORITY\s+STATUS\s+SNAP-ENABLED$", lines[0]);
        Assert.Matches(@"^vol-db\s+db\s+10 GiB\s+2\s+no\s+no\s+HIGH\s+up - attached on node-2\s+no$", lines[1]);
        Assert.Matches(@"^vol-logs\s+logs\s+512 MiB\s+1\s+no\s+no\s+LOW\s+up - detached\s+no$", lines[2]);
    }

    [Fact]
    public async Task List_filters_by_label_and_json_is_an_array()
    {
        var run = await Run("v l --label app=db --json");
        AssertOk(run);
        using var doc = JsonDocument.Parse(run.Out);
        Assert.Equal(JsonValueKind.Array, doc.RootElement.ValueKind);
        Assert.Equal("db", Assert.Single(doc.RootElement.EnumerateArray()).GetProperty("name").GetString());
        Assert.Equal("db", Single<EnumerateVolumesRequest>("Enumerate").Labels["app"]);

        var none = await Run("v l -l app=none -j");
        AssertOk(none);
        using var empty = JsonDocument.Parse(none.Out);
        Assert.Equal(0, empty.RootElement.GetArrayLength());
    }

    [Fact]
    public async Task Inspect_prints_a_block_per_volume_and_reports_the_missing_ones()
    {
        var one = await Run("volume inspect db");
        AssertOk(one);
        Assert.Matches(@"(?m)^Volume\s+:  vol-db\r?$", one.Out);
        Assert.Matches(@"(?m)^State\s+:  Attached: node-2 \(kernel-nbd\)\r?$", one.Out);
        Assert.Matches(@"(?m)^Mount paths\s+:  /mnt/db\r?$", one.Out);

        var mixed = await Run("v i db missing logs");
        Assert.Equal(1, mixed.ExitCode);
        Assert.Equal("Error: volume \"missing\" not found\n", mixed.Err.ReplaceLineEndings("\n"));
        Assert.Matches(@"(?m)^Name\s+:  db\r?$", mixed.Out);
        Assert.Matches(@"(?m)^Name\s+:  logs\r?$", mixed.Out);

        var json = await Run("v i db logs -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal(["db", "logs"], doc.RootElement.EnumerateArray().Select(e => e.GetProperty("name").GetString()));
    }

    [Fact]
    public async Task Update_sends_only_what_was_given()
    {
        AssertOk(await Run("volume update db --size 1T"));
        var grow = Single<UpdateVolumeRequest>("Update");
        Assert.True(grow.HasSizeBytes);
        Assert.Equal(1UL << 40, grow.SizeBytes);
        Assert.Empty(grow.Labels);

        _server.State.Calls.Clear();
        var run = await Run("volume update db --label app=,tier=2");
        AssertOk(run);
        Assert.Equal("Update Volume: Volume update successful for volume db\n", run.Out.ReplaceLineEndings("\n"));
        var labels = Single<UpdateVolumeRequest>("Update");
        Assert.False(labels.HasSizeBytes);
        Assert.Equal(new Dictionary<string, string> { ["app"] = "", ["tier"] = "2" }, labels.Labels);
    }

    [Fact]
    public async Task Delete_clone_and_restore()
    {
        var delete = await Run("v d logs");
        AssertOk(delete);
        Assert.Equal("Volume logs successfully deleted.\n", delete.Out.ReplaceLineEndings("\n"));

        _server.State.Calls.Clear();
        var clone = await Run("volume clone db@nightly --name db2 --label copy=yes");
        AssertOk(clone);
        Assert.Equal("Volume clone successful: vol-db2\n", clone.Out.ReplaceLineEndings("\n"));
        var cloneRequest = Single<CloneVolumeRequest>("Clone");
        Assert.Equal("db@nightly", cloneRequest.Source);
        Assert.Equal("db2", cloneRequest.Name);
        Assert.Equal("yes", cloneRequest.Labels["copy"]);

        _server.State.Calls.Clear();
        var restore = await Run("volume restore logs -s nightly");
        AssertOk(restore);
        Assert.Equal("nightly", Single<RestoreSnapshotRequest>("Restore").Snapshot);

        var json = await Run("v d logs -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public async Task Snapshots_create_list_delete()
    {
        var create = await Run("volume snapshot create db --name nightly");
        AssertOk(create);
        Assert.Equal("Volume snap successful: snap-nightly\n", create.Out.ReplaceLineEndings("\n"));
        var request = Single<CreateSnapshotRequest>("Create");
        Assert.Equal(("db", "nightly"), (request.Volume, request.Name));

        var list = await Run("v snap l db");
        AssertOk(list);
        var lines = list.Out.ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');
        Assert.Matches(@"^ID\s+NAME\s+VOLUME\s+SIZE\s+CREATED$", lines[0]);
        Assert.Matches(@"^snap-1\s+nightly\s+db\s+10 GiB\s+2023-11-14 22:13:20 UTC$", lines[1]);

        var json = await Run("v snap l db -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal("nightly", doc.RootElement[0].GetProperty("name").GetString());

        _server.State.Calls.Clear();
        AssertOk(await Run("v snap d db --name nightly"));
        var delete = Single<DeleteSnapshotRequest>("Delete");
        Assert.Equal(("db", "nightly"), (delete.Volume, delete.Snapshot));

        AssertFailed(await Run("v snap l missing"), "volume \"missing\" not found");
    }

    [Fact]
    public async Task Host_attach_prints_only_the_device_and_mount_sends_absolute_paths()
    {
        var attach = await Run("host attach logs");
        AssertOk(attach);
        Assert.Equal("/dev/nbd3\n", attach.Out.ReplaceLineEndings("\n"));

        _server.State.Calls.Clear();
        var mount = await Run("host mount logs relative/dir");
        AssertOk(mount);
        var request = Single<MountRequest>("Mount");
        Assert.Equal(Path.GetFullPath("relative/dir"), request.Path);
        Assert.Contains($"mounted at {request.Path}", mount.Out, StringComparison.Ordinal);

        AssertOk(await Run("host unmount logs /mnt/logs"));
        AssertOk(await Run("host detach logs"));

        var json = await Run("host attach logs --json");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal("/dev/nbd3", doc.RootElement.GetProperty("devicePath").GetString());
    }

    [Fact]
    public async Task Status_and_pools()
    {
        var status = await Run("status");
        AssertOk(status);
        var text = status.Out.ReplaceLineEndings("\n");
        Assert.StartsWith("Status: Slab is operational\n", text, StringComparison.Ordinal);
        Assert.Contains("Node ID: n1\n", text, StringComparison.Ordinal);
        Assert.Contains("Cluster ID: cluster-1\n", text, StringComparison.Ordinal);
        Assert.Contains("Nodes: 1 online of 1\n", text, StringComparison.Ordinal);
        Assert.Contains("Alerts: none\n", text, StringComparison.Ordinal);

        var json = await Run("status -j");
        AssertOk(json);
        using (var doc = JsonDocument.Parse(json.Out))
            Assert.Equal("node-1", doc.RootElement.GetProperty("nodeName").GetString());

        var pools = await Run("service pool show");
        AssertOk(pools);
        Assert.Contains("Pool ID: p0", pools.Out, StringComparison.Ordinal);
        Assert.Contains("1: /dev/vdb, 2 GiB used of 100 GiB, online", pools.Out, StringComparison.Ordinal);

        var poolsJson = await Run("service pool show --json");
        AssertOk(poolsJson);
        using var poolsDoc = JsonDocument.Parse(poolsJson.Out);
        Assert.Equal("p0", poolsDoc.RootElement[0].GetProperty("id").GetString());
        Assert.Equal(50000, poolsDoc.RootElement[0].GetProperty("measuredIops").GetDouble());
    }

    [Theory]
    [InlineData("tcp://{0}")]
    [InlineData("http://{0}")]
    [InlineData("{0}")]
    public async Task Tcp_endpoints_work_and_the_flag_beats_the_environment(string format)
    {
        var endpoint = string.Format(System.Globalization.CultureInfo.InvariantCulture, format, _server.TcpEndpoint);
        var run = await CliRunner.RunAsync(CliRunner.NowhereEndpoint, "status", "--endpoint", endpoint);
        AssertOk(run);
        Assert.Single(_server.State.Calls);
    }

    [Fact]
    public async Task The_environment_selects_the_endpoint()
    {
        var run = await CliRunner.RunWithEnvironmentAsync(new Dictionary<string, string?> { ["SLAB_ENDPOINT"] = _server.TcpEndpoint }, "status");
        AssertOk(run);
    }

    [Theory]
    [InlineData("bogus", "unknown command \"bogus\" for \"slabctl\"")]
    [InlineData("volume", "missing command for \"slabctl volume\"")]
    [InlineData("volume snapshot", "missing command for \"slabctl volume snapshot\"")]
    [InlineData("volume create", "missing argument NAME")]
    [InlineData("volume create v", "required flag --size not set")]
    [InlineData("volume create v --size 0", "invalid size \"0\" for --size: must be positive")]
    [InlineData("volume create v --size -3", "invalid size \"-3\" for --size: must be positive")]
    [InlineData("volume create v --size ten", "invalid size \"ten\" for --size")]
    [InlineData("volume create v --size 2.5", "fractional sizes are not supported")]
    [InlineData("volume create v --size 65T", "too large: the maximum is 64 TiB")]
    [InlineData("volume create v --size 10 --repl 0", "invalid value \"0\" for --repl: must be 1, 2 or 3")]
    [InlineData("volume create v --size 10 --repl 4", "invalid value \"4\" for --repl")]
    [InlineData("volume create v --size 10 --repl two", "invalid value \"two\" for --repl")]
    [InlineData("volume create v --size 10 --fs ntfs", "invalid value \"ntfs\" for --fs")]
    [InlineData("volume create v --size 10 --io_priority max", "invalid value \"max\" for --io_priority")]
    [InlineData("volume create v --size 10 --label novalue", "invalid label \"novalue\": expected key=value")]
    [InlineData("volume create v --size 10 --label =v", "invalid label \"=v\": the key is empty")]
    [InlineData("volume create v --size 10 --label k=", "invalid label \"k=\": the value is empty")]
    [InlineData("volume create v --size 10 --nope", "unknown flag: --nope")]
    [InlineData("volume create v w --size 10", "unexpected argument \"w\"")]
    [InlineData("volume list --label a", "invalid label \"a\"")]
    [InlineData("volume inspect", "missing argument NAME")]
    [InlineData("volume update v", "nothing to update: give --size and/or --label")]
    [InlineData("volume update v --size 0", "must be positive")]
    [InlineData("volume delete", "missing argument NAME")]
    [InlineData("volume snapshot create v", "required flag --name not set")]
    [InlineData("volume snapshot create v --name", "flag needs an argument: --name")]
    [InlineData("volume snapshot list", "missing argument VOLUME")]
    [InlineData("volume snapshot delete v", "required flag --name not set")]
    [InlineData("volume clone v", "required flag --name not set")]
    [InlineData("volume restore v", "required flag --snapshot not set")]
    [InlineData("host attach", "missing argument VOLUME")]
    [InlineData("host mount v", "missing argument PATH")]
    [InlineData("host unmount v /a /b", "unexpected argument \"/b\"")]
    [InlineData("service pool", "missing command for \"slabctl service pool\"")]
    [InlineData("status --endpoint nohostport", "invalid endpoint \"nohostport\": expected host:port")]
    [InlineData("status --endpoint ftp://x:1", "unsupported scheme")]
    [InlineData("status -x", "unknown shorthand flag: 'x' in -x")]
    public async Task Bad_command_lines_exit_2_with_a_hint_and_send_nothing(string commandLine, string error)
    {
        var run = await Run(commandLine);
        Assert.Equal(2, run.ExitCode);
        Assert.Equal("", run.Out);
        var lines = run.Err.ReplaceLineEndings("\n").Split('\n');
        Assert.StartsWith("Error: ", lines[0], StringComparison.Ordinal);
        Assert.Contains(error, lines[0], StringComparison.Ordinal);
        Assert.StartsWith("Usage: slabctl", lines[1], StringComparison.Ordinal);
        Assert.Contains("--help", lines[2], StringComparison.Ordinal);
        Assert.Empty(_server.State.Calls);
    }

    [Fact]
    public async Task Blank_names_are_usage_errors()
    {
        var run = await CliRunner.RunAsync(_server.UnixEndpoint, "volume", "snapshot", "create", "db", "--name", " ");
        Assert.Equal(2, run.ExitCode);
        Assert.Contains("--name must not be empty", run.Err, StringComparison.Ordinal);
        var blank = await CliRunner.RunAsync(_server.UnixEndpoint, "volume", "delete", "");
        Assert.Equal(2, blank.ExitCode);
        Assert.Contains("NAME must not be empty", blank.Err, StringComparison.Ordinal);
        Assert.Empty(_server.State.Calls);
    }

    [Theory]
    [InlineData("")]
    [InlineData("--help")]
    [InlineData("volume -h")]
    [InlineData("v c --help")]
    [InlineData("volume snapshot create -h")]
    [InlineData("host mount -h")]
    [InlineData("service pool show --help")]
    public async Task Help_goes_to_stdout_with_exit_0_and_sends_nothing(string commandLine)
    {
        var run = await Run(commandLine);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("", run.Err);
        Assert.Contains("Usage:\n  slabctl", run.Out.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.Contains("-j, --json", run.Out, StringComparison.Ordinal);
        Assert.Empty(_server.State.Calls);
    }

    [Fact]
    public async Task Help_lists_subcommands_aliases_and_flags()
    {
        var volume = await Run("volume --help");
        foreach (var name in new[] { "create", "list", "inspect", "update", "delete", "snapshot", "clone", "restore" })
            Assert.Matches($@"(?m)^  {name}\s+\S", volume.Out);
        Assert.Contains("Aliases:\n  volume, v", volume.Out.ReplaceLineEndings("\n"), StringComparison.Ordinal);

        var create = await Run("volume create --help");
        Assert.Contains("-s, --size SIZE", create.Out, StringComparison.Ordinal);
        Assert.Contains("512M, 10G", create.Out, StringComparison.Ordinal);
        Assert.Contains("-l, --label", create.Out, StringComparison.Ordinal);
        Assert.Contains("--io_priority", create.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_socket_is_reported_as_unreachable()
    {
        var path = Path.Combine(Path.GetDirectoryName(_server.SocketPath)!, "nobody.sock");
        var run = await CliRunner.RunAsync("unix://" + path, "volume", "list");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"Error: cannot reach slabd at unix://{path}: socket {path} does not exist. Is slabd running?\n", run.Err.ReplaceLineEndings("\n"));
        Assert.Equal("", run.Out);
    }

    [Fact]
    public async Task Stale_socket_is_reported_as_unreachable()
    {
        var path = Path.Combine(Path.GetDirectoryName(_server.SocketPath)!, "stale.sock");
        // Bound but not listening: what a crashed daemon's leftover socket file looks like to a
        // client. (Kept open because .NET unlinks the file when a bound socket is disposed.)
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        var run = await CliRunner.RunAsync("unix://" + path, "status");
        Assert.Equal(1, run.ExitCode);
        Assert.StartsWith($"Error: cannot reach slabd at unix://{path}: Connection refused", run.Err, StringComparison.Ordinal);
        Assert.EndsWith(". Is slabd running?\n", run.Err.ReplaceLineEndings("\n"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Closed_tcp_port_is_reported_as_unreachable()
    {
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        var run = await CliRunner.RunAsync($"127.0.0.1:{port}", "host", "attach", "v");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"Error: cannot reach slabd at 127.0.0.1:{port}: Connection refused. Is slabd running?\n", run.Err.ReplaceLineEndings("\n"));
    }
}
