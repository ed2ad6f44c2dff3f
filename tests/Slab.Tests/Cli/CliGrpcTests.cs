using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Slab.Api.V1;
using Xunit;

namespace Slab.Tests.Cli;

/// <summary>slabctl against an in-process fake slabd over a real unix socket (and TCP).</summary>
public sealed class CliGrpcTests : FakeServerTest
{
    private const ulong GiB = 1UL << 30;

    [Fact]
    public async Task Create_sends_the_spec_and_prints_the_id()
    {
        var run = await Run("volume create web --size 20 --repl 3 --fs xfs --io_priority low --label app=web,tier=1 -l team=a");
        AssertOk(run);
        Assert.Equal("Volume successfully created: vol-web\n", Text(run));
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
        Assert.Empty(request.Spec.Nodes);
    }

    [Fact]
    public async Task Create_sends_the_nodes_in_order_from_every_occurrence()
    {
        AssertOk(await Run("volume create web --size 20 --repl 2 --nodes node-1,n2 --nodes 10.0.0.3"));
        Assert.Equal(["node-1", "n2", "10.0.0.3"], Single<CreateVolumeRequest>("Create").Spec.Nodes);

        var json = await Run("volume create web --size 20 --nodes n1 -j");
        AssertOk(json);
        using (var doc = JsonDocument.Parse(json.Out))
            Assert.Equal("n1", Assert.Single(doc.RootElement.GetProperty("spec").GetProperty("nodes").EnumerateArray()).GetString());

        Server.State.Calls.Clear();
        var blank = await CliRunner.RunAsync(Server.UnixEndpoint, "volume", "create", "web", "--size", "1", "--nodes", "a, ,b");
        AssertUsageError(blank, "invalid value \"a, ,b\" for --nodes: a name is empty");
    }

    [Fact]
    public async Task Create_sends_zones_and_racks()
    {
        var run = await Run("volume create web --size 20 --repl 2 --zones z1,z2 --racks r1 -j");
        AssertOk(run);
        var spec = Single<CreateVolumeRequest>("Create").Spec;
        Assert.Equal(["z1", "z2"], spec.Zones);
        Assert.Equal(["r1"], spec.Racks);
        using (var doc = JsonDocument.Parse(run.Out))
            Assert.Equal(2, doc.RootElement.GetProperty("spec").GetProperty("zones").GetArrayLength());
        Server.State.Calls.Clear();
        AssertUsageError(await CliRunner.RunAsync(Server.UnixEndpoint, "volume", "create", "w", "--size", "1", "--zones", "a,,b"), "invalid value \"a,,b\" for --zones: a name is empty");
    }

    [Fact]
    public async Task Qos_flags_are_sent_as_limits_and_an_update_sends_only_the_flags_given()
    {
        AssertOk(await Run("volume create web --size 1 --max_iops 1000,500 --max_bandwidth 40"));
        var limits = Single<CreateVolumeRequest>("Create").Spec.Limits;
        Assert.Equal((1000UL, 500UL, 40_000_000UL, 40_000_000UL), (limits.MaxReadIops, limits.MaxWriteIops, limits.MaxReadBytesPerSecond, limits.MaxWriteBytesPerSecond));
        Server.State.Calls.Clear();

        AssertOk(await Run("volume update db --max_iops 0,250"));
        var update = Single<UpdateVolumeRequest>("Update").Limits;
        Assert.Equal((0UL, 250UL), (update.MaxReadIops, update.MaxWriteIops));
        Assert.False(update.HasMaxReadBytesPerSecond || update.HasMaxWriteBytesPerSecond);
        Server.State.Calls.Clear();

        AssertUsageError(await CliRunner.RunAsync(Server.UnixEndpoint, "volume", "update", "web", "--max_bandwidth", "1,x"), "invalid value \"1,x\" for --max_bandwidth: 'x' is not a whole number");
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
        var lines = Lines(run);
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^ID\s+NAME\s+SIZE\s+HA\s+SHARED\s+ENCRYPTED\s+IO_PRIORITY\s+STATUS\s+SNAP-ENABLED\s+NODES$", lines[0]);
        Assert.Matches(@"^vol-db\s+db\s+10 GiB\s+2\s+no\s+no\s+HIGH\s+up - attached on node-2\s+no\s+node-1,node-2$", lines[1]);
        Assert.Matches(@"^vol-logs\s+logs\s+512 MiB\s+1\s+no\s+no\s+LOW\s+up - detached\s+no\s+-$", lines[2]);
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

        Server.State.Calls.Clear();
        var run = await Run("volume update db --label app=,tier=2");
        AssertOk(run);
        Assert.Equal("Update Volume: Volume update successful for volume db\n", Text(run));
        var labels = Single<UpdateVolumeRequest>("Update");
        Assert.False(labels.HasSizeBytes);
        Assert.Equal(new Dictionary<string, string> { ["app"] = "", ["tier"] = "2" }, labels.Labels);
    }

    [Fact]
    public async Task Delete_clone_and_restore()
    {
        var delete = await Run("v d logs");
        AssertOk(delete);
        Assert.Equal("Volume logs successfully deleted.\n", Text(delete));

        Server.State.Calls.Clear();
        var clone = await Run("volume clone db@nightly --name db2 --label copy=yes");
        AssertOk(clone);
        Assert.Equal("Volume clone successful: vol-db2\n", Text(clone));
        var cloneRequest = Single<CloneVolumeRequest>("Clone");
        Assert.Equal("db@nightly", cloneRequest.Source);
        Assert.Equal("db2", cloneRequest.Name);
        Assert.Equal("yes", cloneRequest.Labels["copy"]);

        Server.State.Calls.Clear();
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
        Assert.Equal("Volume snap successful: snap-nightly\n", Text(create));
        var request = Single<CreateSnapshotRequest>("Create");
        Assert.Equal(("db", "nightly"), (request.Volume, request.Name));

        var list = await Run("v snap l db");
        AssertOk(list);
        var lines = Lines(list);
        Assert.Matches(@"^ID\s+NAME\s+VOLUME\s+SIZE\s+CREATED\s+NODES$", lines[0]);
        Assert.Matches(@"^snap-1\s+nightly\s+db\s+10 GiB\s+2023-11-14 22:13:20 UTC\s+-$", lines[1]);

        var json = await Run("v snap l db -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal("nightly", doc.RootElement[0].GetProperty("name").GetString());

        Server.State.Calls.Clear();
        AssertOk(await Run("v snap d db --name nightly"));
        var delete = Single<DeleteSnapshotRequest>("Delete");
        Assert.Equal(("db", "nightly"), (delete.Volume, delete.Snapshot));

        AssertFailed(await Run("v snap l missing"), "volume \"missing\" not found");
    }

    [Fact]
    public async Task Snapshot_group_sends_every_volume_and_lists_the_members()
    {
        var run = await Run("volume snapshot group --volume_ids db --volume_ids logs --name nightly");
        AssertOk(run);
        var request = Single<CreateGroupSnapshotRequest>("CreateGroup");
        Assert.Equal("nightly", request.Name);
        Assert.Equal(["db", "logs"], request.Volumes);
        var lines = Lines(run);
        Assert.Matches(@"^ID\s+NAME\s+VOLUME", lines[0]);
        Assert.Equal(3, lines.Length);
        Server.State.Calls.Clear();
        AssertUsageError(await CliRunner.RunAsync(Server.UnixEndpoint, "volume", "snapshot", "group", "--name", "x"), "--volume_ids");
    }

    [Fact]
    public async Task Host_attach_prints_only_the_device_and_mount_sends_absolute_paths()
    {
        var attach = await Run("host attach logs");
        AssertOk(attach);
        Assert.Equal("/dev/nbd3\n", Text(attach));

        Server.State.Calls.Clear();
        var mount = await Run("host mount logs relative/dir");
        AssertOk(mount);
        var request = Single<MountRequest>("Mount");
        Assert.Equal(Path.GetFullPath("relative/dir"), request.Path);
        Assert.Contains($"mounted at {request.Path}", mount.Out, StringComparison.Ordinal);
        Assert.Empty(request.Options);

        Server.State.Calls.Clear();
        AssertOk(await Run("host mount logs /mnt/logs -o noatime,discard"));
        Assert.Equal(["noatime", "discard"], Single<MountRequest>("Mount").Options);

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
        var text = Text(status);
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
        var endpoint = string.Format(System.Globalization.CultureInfo.InvariantCulture, format, Server.TcpEndpoint);
        var run = await CliRunner.RunAsync(CliRunner.NowhereEndpoint, "status", "--endpoint", endpoint);
        AssertOk(run);
        Assert.Single(Server.State.Calls);
    }

    [Fact]
    public async Task The_environment_selects_the_endpoint()
    {
        var run = await CliRunner.RunWithEnvironmentAsync(new Dictionary<string, string?> { ["SLAB_ENDPOINT"] = Server.TcpEndpoint }, "status");
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
    [InlineData("volume create v --size 10 --nodes", "flag needs an argument: --nodes")]
    [InlineData("volume create v --size 10 --nodes a,,b", "invalid value \"a,,b\" for --nodes: a name is empty")]
    [InlineData("volume create v --size 10 --nodes a, --nodes b", "invalid value \"a,\" for --nodes: a name is empty")]
    [InlineData("volume create v --size 10 --nodes ,", "invalid value \",\" for --nodes: a name is empty")]
    [InlineData("volume create v --size 10 --nodes a,b,a", "invalid value \"a,b,a\" for --nodes: \"a\" is given twice")]
    [InlineData("volume create v --size 10 --nodes a --nodes b,a", "invalid value \"b,a\" for --nodes: \"a\" is given twice")]
    [InlineData("cluster", "missing command for \"slabctl cluster\" (one of: list, inspect, delete, options)")]
    [InlineData("cluster bogus", "unknown command \"bogus\" for \"slabctl cluster\"")]
    [InlineData("cluster list extra", "unexpected argument \"extra\"")]
    [InlineData("cluster list --node n1", "unknown flag: --node")]
    [InlineData("cluster inspect n1 n2", "unexpected argument \"n2\"")]
    [InlineData("cluster delete", "missing argument NODE")]
    [InlineData("cluster delete n1 --force", "unknown flag: --force")]
    [InlineData("service kvdb", "missing command for \"slabctl service kvdb\" (one of: members, add-member, remove-member)")]
    [InlineData("service kvdb members n1", "unexpected argument \"n1\"")]
    [InlineData("service kvdb add-member", "required flag --node not set")]
    [InlineData("service kvdb add-member n4", "unexpected argument \"n4\"")]
    [InlineData("service kvdb add-member --node", "flag needs an argument: --node")]
    [InlineData("service kvdb remove-member", "required flag --node not set")]
    [InlineData("service kvdb remove-member --node= ", "empty value for --node")]
    [InlineData("service maintenance", "one of --enter or --exit is required")]
    [InlineData("service maintenance --node n2", "one of --enter or --exit is required")]
    [InlineData("service maintenance --enter --exit", "only one of --enter or --exit may be given")]
    [InlineData("service maintenance --enter=maybe", "invalid value \"maybe\" for --enter: must be true or false")]
    [InlineData("service maintenance --enter --node", "flag needs an argument: --node")]
    [InlineData("service maintenance --cycle", "unknown flag: --cycle")]
    [InlineData("volume list --label a", "invalid label \"a\"")]
    [InlineData("volume inspect", "missing argument NAME")]
    [InlineData("volume update v", "nothing to update: give --size, --label, --max_iops and/or --max_bandwidth")]
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
    public async Task Bad_command_lines_exit_2_with_a_hint_and_send_nothing(string commandLine, string error) =>
        AssertUsageError(await Run(commandLine), error);

    [Theory]
    [InlineData("--name must not be empty", "volume", "snapshot", "create", "db", "--name", " ")]
    [InlineData("NAME must not be empty", "volume", "delete", "")]
    [InlineData("NODE must not be empty", "cluster", "delete", " ")]
    [InlineData("NODE must not be empty", "cluster", "inspect", "")]
    [InlineData("--node must not be empty", "service", "kvdb", "add-member", "--node", " ")]
    [InlineData("--node must not be empty", "service", "kvdb", "remove-member", "--node", "  ")]
    [InlineData("--node must not be empty", "service", "maintenance", "--exit", "--node", " ")]
    [InlineData("invalid value \"a, \" for --nodes: a name is empty", "volume", "create", "v", "--size", "1", "--nodes", "a, ")]
    [InlineData("invalid value \"a, a\" for --nodes: \"a\" is given twice", "volume", "create", "v", "--size", "1", "--nodes", "a, a")]
    public async Task Blank_names_are_usage_errors(string error, params string[] args) =>
        AssertUsageError(await CliRunner.RunAsync(Server.UnixEndpoint, args), error);

    [Theory]
    [InlineData("")]
    [InlineData("--help")]
    [InlineData("volume -h")]
    [InlineData("v c --help")]
    [InlineData("volume snapshot create -h")]
    [InlineData("host mount -h")]
    [InlineData("service pool show --help")]
    [InlineData("cluster -h")]
    [InlineData("cluster delete --help")]
    [InlineData("service kvdb add-member -h")]
    [InlineData("service maintenance --help")]
    public async Task Help_goes_to_stdout_with_exit_0_and_sends_nothing(string commandLine)
    {
        var run = await Run(commandLine);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("", run.Err);
        Assert.Contains("Usage:\n  slabctl", Text(run), StringComparison.Ordinal);
        Assert.Contains("-j, --json", run.Out, StringComparison.Ordinal);
        Assert.Empty(Server.State.Calls);
    }

    [Fact]
    public async Task Help_lists_subcommands_aliases_and_flags()
    {
        var volume = await Run("volume --help");
        foreach (var name in new[] { "create", "list", "inspect", "update", "delete", "snapshot", "clone", "restore" })
            Assert.Matches($@"(?m)^  {name}\s+\S", volume.Out);
        Assert.Contains("Aliases:\n  volume, v", Text(volume), StringComparison.Ordinal);

        var create = await Run("volume create --help");
        Assert.Contains("-s, --size SIZE", create.Out, StringComparison.Ordinal);
        Assert.Contains("512M, 10G", create.Out, StringComparison.Ordinal);
        Assert.Contains("-l, --label", create.Out, StringComparison.Ordinal);
        Assert.Contains("--io_priority", create.Out, StringComparison.Ordinal);
        Assert.Contains("--nodes NODE,...", create.Out, StringComparison.Ordinal);

        var cluster = await Run("cluster --help");
        foreach (var name in new[] { "list", "inspect", "delete" })
            Assert.Matches($@"(?m)^  {name}\s+\S", cluster.Out);
        var kvdb = await Run("service kvdb --help");
        foreach (var name in new[] { "members", "add-member", "remove-member" })
            Assert.Matches($@"(?m)^  {name}\s+\S", kvdb.Out);

        var maintenance = await Run("service maintenance --help");
        Assert.Contains("slabctl service maintenance --enter|--exit [flags]", maintenance.Out, StringComparison.Ordinal);
        Assert.Contains("--node NODE", maintenance.Out, StringComparison.Ordinal);
        var add = await Run("service kvdb add-member --help");
        Assert.Contains("slabctl service kvdb add-member --node NODE [flags]", add.Out, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Missing_socket_is_reported_as_unreachable()
    {
        var path = Path.Combine(Path.GetDirectoryName(Server.SocketPath)!, "nobody.sock");
        var run = await CliRunner.RunAsync("unix://" + path, "volume", "list");
        Assert.Equal(1, run.ExitCode);
        Assert.Equal($"Error: cannot reach slabd at unix://{path}: socket {path} does not exist. Is slabd running?\n", run.Err.ReplaceLineEndings("\n"));
        Assert.Equal("", run.Out);
    }

    [Fact]
    public async Task Stale_socket_is_reported_as_unreachable()
    {
        var path = Path.Combine(Path.GetDirectoryName(Server.SocketPath)!, "stale.sock");
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

    private const string NotClustered = "this node is not part of a cluster (slabd was started without --cluster-id)";

    [Fact]
    public async Task Cluster_list_prints_a_row_per_node_with_one_call()
    {
        var run = await Run("cluster list");
        AssertOk(run);
        Assert.Equal("Inspect", Assert.Single(Server.State.Calls).Method);
        var lines = Lines(run);
        Assert.Equal(["Cluster ID: cluster-1", "Leader: node-1 (n1)", "Nodes: 3 online of 4", ""], lines[..4]);
        Assert.Matches(@"^ID\s+NAME\s+ADDRESS\s+STATUS\s+ZONE\s+RACK\s+KVDB\s+CAPACITY\s+USED\s+REPLICAS\s+ATTACHED\s+LAST-SEEN$", lines[4]);
        Assert.Matches(@"^n1\s+node-1\s+10\.0\.0\.1\s+online\s+z1\s+r1\s+yes \(leader\)\s+100 GiB\s+2 GiB\s+2\s+0\s+this node$", lines[5]);
        Assert.Matches(@"^n2\s+node-2\s+10\.0\.0\.2\s+online\s+z1\s+r2\s+yes\s+100 GiB\s+2 GiB\s+2\s+1\s+\d+s ago$", lines[6]);
        Assert.Matches(@"^n3\s+node-3\s+10\.0\.0\.3\s+OFFLINE\s+z2\s+r3\s+yes\s+100 GiB\s+2 GiB\s+0\s+0\s+1\dm ago$", lines[7]);
        Assert.Matches(@"^n4\s+node-4\s+10\.0\.0\.4\s+online\s+z1\s+r4\s+no\s+100 GiB\s+2 GiB\s+0\s+0\s+\d+s ago$", lines[8]);
        Assert.Matches(@"^Warning: node node-3 \(n3\) is offline \(last seen: 1\dm ago\)$", lines[9]);
        Assert.Equal(10, lines.Length);
    }

    [Fact]
    public async Task Cluster_list_json_is_an_array_of_nodes()
    {
        var run = await Run("cluster ls -j");
        AssertOk(run);
        using var doc = JsonDocument.Parse(run.Out);
        Assert.Equal(["n1", "n2", "n3", "n4"], doc.RootElement.EnumerateArray().Select(n => n.GetProperty("id").GetString()));
        Assert.Equal("offline", doc.RootElement[2].GetProperty("status").GetString());
        Assert.True(doc.RootElement[0].GetProperty("isLeader").GetBoolean());
        Assert.Equal("10.0.0.1:9504", doc.RootElement[0].GetProperty("raftEndpoint").GetString());
    }

    [Fact]
    public async Task Cluster_list_on_a_single_node_shows_the_node_and_no_leader()
    {
        Server.State.Cluster = FakeSlabServer.FakeState.SingleNodeCluster();
        var run = await Run("cluster list");
        AssertOk(run);
        var lines = Lines(run);
        Assert.Equal(["Cluster ID: cluster-1", "Leader: - (single node)", "Nodes: 1 online of 1", ""], lines[..4]);
        Assert.Matches(@"^n1\s+node-1\s+10\.0\.0\.1\s+online\s+z1\s+r1\s+no\s+100 GiB\s+2 GiB\s+2\s+1\s+this node$", lines[5]);
        Assert.Equal(6, lines.Length);
    }

    [Fact]
    public async Task Cluster_without_quorum_says_so_first()
    {
        Server.State.Cluster.HasQuorum = false;
        Server.State.Cluster.LeaderNodeId = Server.State.Cluster.LeaderNodeName = "";
        foreach (var run in new[] { await Run("cluster list"), await Run("cluster inspect") })
        {
            AssertOk(run);
            var lines = Lines(run);
            Assert.Equal("No quorum: cluster writes are refused until a majority of KVDB members is reachable", lines[0]);
            Assert.Matches(@"(?m)^Leader\s*:\s+none \(no quorum\)\r?$", run.Out);
        }
    }

    [Fact]
    public async Task Cluster_inspect_prints_the_summary_members_and_nodes()
    {
        var run = await Run("cluster inspect");
        AssertOk(run);
        Assert.Equal("Inspect", Assert.Single(Server.State.Calls).Method);
        var text = Text(run);
        foreach (var (key, value) in new[]
        {
            ("Cluster ID", "cluster-1"), ("Mode", "cluster"), ("Leader", "node-1 (n1)"), ("Quorum", "yes"), ("Revision", "42"),
            ("Nodes", "3 online of 4"), ("Volumes", "2"), ("Total Capacity", "300 GiB"), ("Total Used", "6 GiB"), ("This node", "node-1 (n1)"),
        })
        {
            Assert.Matches($@"(?m)^{key}\s+:  {System.Text.RegularExpressions.Regex.Escape(value)}$", text);
        }
        Assert.Contains("KVDB members: 3 (2 reachable)\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\t10\.0\.0\.1:9504\s+n1\s+node-1\s+yes\s+yes$", text);
        Assert.Matches(@"(?m)^\t10\.0\.0\.3:9504\s+n3\s+node-3\s+no\s+no$", text);
        Assert.Contains("Nodes: 4\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\tn4\s+node-4\s+10\.0\.0\.4\s+online", text);
        Assert.Matches(@"(?m)^\tWarning: node node-3 \(n3\) is offline", text);

        var json = await Run("cluster i --json");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal("cluster-1", doc.RootElement.GetProperty("clusterId").GetString());
        Assert.True(doc.RootElement.GetProperty("hasQuorum").GetBoolean());
        Assert.Equal(3, doc.RootElement.GetProperty("kvdbMembers").GetArrayLength());
        Assert.Equal(4, doc.RootElement.GetProperty("nodes").GetArrayLength());
    }

    [Theory]
    [InlineData("node-2")]
    [InlineData("n2")]
    [InlineData("10.0.0.2")]
    public async Task Cluster_inspect_node_shows_one_node_by_id_name_or_address(string node)
    {
        var run = await Run($"cluster inspect {node}");
        AssertOk(run);
        Assert.Equal(node, Single<InspectNodeRequest>("InspectNode").Node);
        var text = Text(run);
        foreach (var (key, value) in new[]
        {
            ("Node ID", "n2"), ("Name", "node-2"), ("Status", "online"), ("This node", "no"), ("API endpoint", "10.0.0.2:9501"),
            ("Raft endpoint", "10.0.0.2:9504"), ("Zone", "z1"), ("Rack", "r2"), ("Labels", "disk=ssd"), ("KVDB member", "yes"),
            ("Capacity", "100 GiB"), ("Provisioned", "11 GiB"), ("Replicas", "2"), ("Attached volumes", "1"), ("Load (1 min)", "0.5"),
            ("Registered", "2023-11-14 22:13:20 UTC"),
        })
        {
            Assert.Matches($@"(?m)^{System.Text.RegularExpressions.Regex.Escape(key)}\s+:  {System.Text.RegularExpressions.Regex.Escape(value)}$", text);
        }
        Assert.Matches(@"(?m)^Last seen\s+:  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+s ago\)$", text);
        Assert.Contains("Pools: 1 pool\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^p0\s+HIGH\s+100 GiB\s+2 GiB\s+11 GiB\s+1$", text);
    }

    [Fact]
    public async Task Cluster_inspect_node_json_is_the_node_and_an_unknown_node_fails()
    {
        var json = await Run("cluster inspect node-3 -j");
        AssertOk(json);
        using (var doc = JsonDocument.Parse(json.Out))
        {
            Assert.Equal("n3", doc.RootElement.GetProperty("id").GetString());
            Assert.Equal("offline", doc.RootElement.GetProperty("status").GetString());
        }

        var missing = await Run("cluster inspect nope");
        AssertFailed(missing, "node \"nope\" not found");
        Assert.Equal("", missing.Out);
    }

    [Fact]
    public async Task Cluster_options_show_and_change_in_minutes_and_megabytes()
    {
        var list = await Run("cluster options list");
        AssertOk(list);
        Assert.Contains("1440 minutes", Text(list));
        Assert.Contains("unlimited", Text(list));

        var update = await Run("cluster options update --repl-move-timeout 0.5 --resync-rate 120");
        AssertOk(update);
        var sent = Assert.IsType<UpdateClusterOptionsRequest>(Server.State.Calls.Single(c => c.Method == "UpdateOptions").Request);
        Assert.Equal((30u, 120_000_000ul), (sent.ReplMoveTimeoutSeconds, sent.ResyncRateBytesPerSecond));
        Assert.Contains("0.5 minutes", Text(update));
        Assert.Contains("120 MB/s", Text(update));

        foreach (var bad in new[] { "cluster options update", "cluster options update --repl-move-timeout -3", "cluster options update --resync-rate fast" })
        {
            Assert.Equal(2, (await Run(bad)).ExitCode);
        }
    }

    [Fact]
    public async Task Cluster_delete_decommissions_the_node()
    {
        var run = await Run("cluster delete node-4");
        AssertOk(run);
        Assert.Equal("Node node-4 successfully removed from the cluster.\n", Text(run));
        Assert.Equal("node-4", Single<DecommissionRequest>("Decommission").Node);
        Assert.DoesNotContain(Server.State.Cluster.Nodes, n => n.Id == "n4");

        var json = await Run("cluster decommission n3 -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
    }

    [Fact]
    public async Task Cluster_delete_refused_by_slabd_prints_why_and_exits_1()
    {
        var refused = await Run("cluster delete node-2");
        AssertFailed(refused, "node node-2 has 1 attached volume(s); detach them first");
        Assert.Equal("", refused.Out);
        Assert.Contains(Server.State.Cluster.Nodes, n => n.Id == "n2");

        AssertFailed(await Run("cluster delete nope -j"), "node \"nope\" not found");
    }

    [Fact]
    public async Task Kvdb_members_prints_the_voters()
    {
        var run = await Run("service kvdb members");
        AssertOk(run);
        Single<KvdbMembersRequest>("KvdbMembers");
        var lines = Lines(run);
        Assert.Equal(4, lines.Length);
        Assert.Matches(@"^MEMBER\s+NODE\s+NAME\s+LEADER\s+REACHABLE$", lines[0]);
        Assert.Matches(@"^10\.0\.0\.1:9504\s+n1\s+node-1\s+yes\s+yes$", lines[1]);
        Assert.Matches(@"^10\.0\.0\.2:9504\s+n2\s+node-2\s+no\s+yes$", lines[2]);
        Assert.Matches(@"^10\.0\.0\.3:9504\s+n3\s+node-3\s+no\s+no$", lines[3]);

        var json = await Run("service kvdb members -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal(["n1", "n2", "n3"], doc.RootElement.EnumerateArray().Select(m => m.GetProperty("nodeId").GetString()));
        Assert.True(doc.RootElement[0].GetProperty("isLeader").GetBoolean());
    }

    [Fact]
    public async Task Kvdb_add_member_sends_the_node_and_prints_the_members()
    {
        var run = await Run("service kvdb add-member --node node-4");
        AssertOk(run);
        Assert.Equal("node-4", Single<AddKvdbMemberRequest>("AddKvdbMember").Node);
        var lines = Lines(run);
        Assert.Equal("Node node-4 added to the KVDB members.", lines[0]);
        Assert.Matches(@"^MEMBER\s+NODE", lines[1]);
        Assert.Matches(@"^10\.0\.0\.4:9504\s+n4\s+node-4\s+no\s+yes$", lines[^1]);

        var again = await Run("service kvdb add-member --node=n4 -j");
        AssertFailed(again, "node node-4 is already a KVDB member");
        Assert.Equal("", again.Out);
    }

    [Fact]
    public async Task Kvdb_remove_member_sends_the_member_and_prints_the_rest()
    {
        var run = await Run("service kvdb remove-member --node 10.0.0.3:9504 --json");
        AssertOk(run);
        Assert.Equal("10.0.0.3:9504", Single<RemoveKvdbMemberRequest>("RemoveKvdbMember").Member);
        using (var doc = JsonDocument.Parse(run.Out))
            Assert.Equal(["n1", "n2"], doc.RootElement.EnumerateArray().Select(m => m.GetProperty("nodeId").GetString()));

        var text = await Run("service kvdb remove-member --node node-2");
        AssertOk(text);
        Assert.StartsWith("Member node-2 removed from the KVDB members.\n", Text(text), StringComparison.Ordinal);
        Assert.Equal(3, Lines(text).Length);

        AssertFailed(await Run("service kvdb remove-member --node node-3"), "\"node-3\" is not a KVDB member");
    }

    [Fact]
    public async Task Maintenance_enters_and_exits_on_this_node_or_another()
    {
        var enter = await Run("service maintenance --enter");
        AssertOk(enter);
        Assert.Equal("Node node-1 (n1) entered maintenance mode (status: maintenance).\n", Text(enter));
        var request = Single<SetMaintenanceRequest>("SetMaintenance");
        Assert.Equal(("", true), (request.Node, request.Enter));

        Server.State.Calls.Clear();
        var exit = await Run("service maintenance --exit --node node-2");
        AssertOk(exit);
        Assert.Equal("Node node-2 (n2) exited maintenance mode (status: online).\n", Text(exit));
        request = Single<SetMaintenanceRequest>("SetMaintenance");
        Assert.Equal(("node-2", false), (request.Node, request.Enter));

        var json = await Run("service maintenance --enter --node n3 -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.Equal("maintenance", doc.RootElement.GetProperty("status").GetString());
        Assert.Equal("n3", doc.RootElement.GetProperty("id").GetString());

        AssertFailed(await Run("service maintenance --exit --node nope"), "node \"nope\" not found");
    }

    [Theory]
    [InlineData("service kvdb members", "KvdbMembers")]
    [InlineData("service kvdb members -j", "KvdbMembers")]
    [InlineData("service kvdb add-member --node node-4", "AddKvdbMember")]
    [InlineData("service kvdb remove-member --node node-3", "RemoveKvdbMember")]
    [InlineData("service maintenance --enter", "SetMaintenance")]
    [InlineData("cluster inspect node-1", "InspectNode")]
    [InlineData("cluster delete node-4 --json", "Decommission")]
    public async Task Cluster_calls_on_a_single_node_print_slabds_refusal_and_exit_1(string commandLine, string method)
    {
        Server.State.ClusterFailure = new Grpc.Core.Status(Grpc.Core.StatusCode.FailedPrecondition, NotClustered);
        var run = await Run(commandLine);
        AssertFailed(run, NotClustered);
        Assert.Equal("", run.Out);
        Assert.Equal(method, Assert.Single(Server.State.Calls).Method);
    }

    [Fact]
    public async Task No_quorum_from_slabd_is_its_message_not_unreachable()
    {
        const string noQuorum = "no quorum: 1 of 3 KVDB members reachable";
        Server.State.ClusterFailure = new Grpc.Core.Status(Grpc.Core.StatusCode.Unavailable, noQuorum);
        AssertFailed(await Run("service kvdb add-member --node node-4"), noQuorum);
        AssertFailed(await Run("cluster delete node-4"), noQuorum);
    }

    [Fact]
    public async Task Clustered_status_shows_the_cluster()
    {
        Server.State.Status = Server.State.ClusteredStatus();
        var run = await Run("status");
        AssertOk(run);
        Assert.Equal("Status", Assert.Single(Server.State.Calls).Method);
        var text = Text(run);
        Assert.Contains("Cluster Summary\n\tCluster ID: cluster-1\n\tNodes: 3 online of 4\n\tVolumes: 7 (2 attached)\n\tLeader: node-1 (n1)\n\tQuorum: yes\n\tKVDB members: 3 (2 reachable)\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\t10\.0\.0\.3:9504\s+n3\s+node-3\s+no\s+no$", text);
        Assert.Single(text.Split('\n'), l => l.StartsWith("\tVolumes:", StringComparison.Ordinal));
        Assert.Matches(@"(?m)^\tTotal Capacity\s+:  300 GiB$", text);
        Assert.Matches(@"(?m)^\tTotal Used\s+:  6 GiB$", text);

        var json = await Run("status -j");
        AssertOk(json);
        using var doc = JsonDocument.Parse(json.Out);
        Assert.True(doc.RootElement.GetProperty("clustered").GetBoolean());
        Assert.Equal("node-1", doc.RootElement.GetProperty("leaderNodeName").GetString());
        Assert.Equal(3, doc.RootElement.GetProperty("kvdbMembers").GetArrayLength());
        Assert.Equal((300 * GiB).ToString(System.Globalization.CultureInfo.InvariantCulture), doc.RootElement.GetProperty("clusterTotalBytes").GetString());
    }

    [Fact]
    public async Task Volume_inspect_shows_the_replica_nodes_and_placement()
    {
        Server.State.Volumes[0].Spec.Nodes.Add(["node-1", "node-2"]);
        var run = await Run("volume inspect db");
        AssertOk(run);
        var text = Text(run);
        Assert.Matches(@"(?m)^Placement\s+:  only on node-1,node-2$", text);
        Assert.Contains("Replica sets on nodes:\n", text, StringComparison.Ordinal);
        Assert.Contains("Node  :  node-1 (Pool p0), in-sync\n", text, StringComparison.Ordinal);
        Assert.Contains("Node  :  node-2 (Pool p0), in-sync\n", text, StringComparison.Ordinal);
    }
}
