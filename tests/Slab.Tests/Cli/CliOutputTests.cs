extern alias cli;

using cli::Slab.Cli.Commands;
using cli::Slab.Cli.Output;
using Xunit;
using CliApi = cli::Slab.Api.V1;

namespace Slab.Tests.Cli;

public sealed class CliOutputTests
{
    private const ulong GiB = 1UL << 30;

    [Fact]
    public void Table_aligns_columns_with_two_spaces_and_no_trailing_whitespace()
    {
        var table = new Table("ID", "NAME", "STATUS");
        table.AddRow("1", "a-long-name", "up");
        table.AddRow("1234", "b", "");
        using var w = new StringWriter();
        table.Write(w);
        Assert.Equal(
            "ID    NAME         STATUS\n" +
            "1     a-long-name  up\n" +
            "1234  b\n",
            w.ToString().ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Table_with_no_rows_prints_the_header_and_rejects_ragged_rows()
    {
        var table = new Table("A", "B");
        using var w = new StringWriter();
        table.Write(w, "\t");
        Assert.Equal("\tA  B\n", w.ToString().ReplaceLineEndings("\n"));
        Assert.Throws<ArgumentException>(() => table.AddRow("only-one"));
    }

    [Fact]
    public void Key_value_block_lines_up_colons()
    {
        using var w = new StringWriter();
        new KeyValueBlock().Add("Name", "v").Add("IO Priority", "HIGH").Raw("Sub:").Write(w, "");
        Assert.Equal("Name         :  v\nIO Priority  :  HIGH\nSub:\n", w.ToString().ReplaceLineEndings("\n"));
    }

    private static CliApi.Volume AttachedVolume()
    {
        var v = new CliApi.Volume
        {
            Id = "vol-1",
            Name = "db",
            State = "up",
            Spec = new CliApi.VolumeSpec { SizeBytes = 10 * GiB, Repl = 2, Fs = "xfs", IoPriority = CliApi.IoPriority.High },
            Attachment = new CliApi.Attachment { NodeId = "n2", NodeName = "node-2", DevicePath = "/dev/nbd0", Method = "kernel-nbd" },
            UsedBytes = 3 * GiB / 2,
            CreatedUnixMs = 1_700_000_000_000,
            SnapshotCount = 2,
            Source = "base@s1",
            Formatted = true,
        };
        v.Spec.Labels.Add("tier", "1");
        v.Spec.Labels.Add("app", "db");
        v.Spec.Nodes.Add(["node-1", "n2"]);
        v.Attachment.MountPaths.Add("/mnt/db");
        v.Replicas.Add(new CliApi.Replica { NodeId = "n1", NodeName = "node-1", PoolId = "p0", State = "in-sync", NodeOnline = true });
        v.Replicas.Add(new CliApi.Replica { NodeId = "n2", NodeName = "", PoolId = "p1", State = "catching-up" });
        return v;
    }

    [Fact]
    public void Volume_list_is_pxctls_table()
    {
        var detached = new CliApi.Volume { Id = "vol-2", Name = "logs", State = "up", Spec = new CliApi.VolumeSpec { SizeBytes = 512UL << 20 } };
        using var w = new StringWriter();
        VolumeViews.WriteList([AttachedVolume(), detached], w);
        var lines = w.ToString().ReplaceLineEndings("\n").TrimEnd('\n').Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.Matches(@"^ID\s+NAME\s+SIZE\s+HA\s+SHARED\s+ENCRYPTED\s+IO_PRIORITY\s+STATUS\s+SNAP-ENABLED\s+NODES$", lines[0]);
        // NODES: where the replicas are, by name, or by id for a replica whose node has no name.
        Assert.Matches(@"^vol-1\s+db\s+10 GiB\s+2\s+no\s+no\s+HIGH\s+up - attached on node-2\s+no\s+node-1,n2$", lines[1]);
        Assert.Matches(@"^vol-2\s+logs\s+512 MiB\s+1\s+no\s+no\s+-\s+up - detached\s+no\s+-$", lines[2]);
    }

    [Fact]
    public void Volume_inspect_has_every_key()
    {
        using var w = new StringWriter();
        VolumeViews.WriteInspect(AttachedVolume(), w);
        var text = w.ToString();
        foreach (var (key, value) in new[]
        {
            ("Volume", "vol-1"), ("Name", "db"), ("Size", "10 GiB"), ("Format", "xfs"), ("HA", "2"),
            ("IO Priority", "HIGH"), ("Placement", "only on node-1,n2"), ("Creation time", "2023-11-14 22:13:20 UTC"), ("Labels", "app=db,tier=1"),
            ("State", "Attached: node-2 (kernel-nbd)"), ("Device Path", "/dev/nbd0"), ("Mount paths", "/mnt/db"),
            ("Used", "1.5 GiB"), ("Snapshots", "2"), ("Source", "base@s1"),
        })
        {
            Assert.Matches($@"(?m)^{System.Text.RegularExpressions.Regex.Escape(key)}\s+:  {System.Text.RegularExpressions.Regex.Escape(value)}$", text.ReplaceLineEndings("\n"));
        }
        Assert.Contains("Replica sets on nodes:", text, StringComparison.Ordinal);
        Assert.Contains("Node  :  node-1 (Pool p0), in-sync", text, StringComparison.Ordinal);
        Assert.Contains("Node  :  n2 (Pool p1), catching-up, node offline", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Detached_unformatted_volume_inspect_uses_defaults()
    {
        var v = new CliApi.Volume { Id = "x", Name = "x", Spec = new CliApi.VolumeSpec { SizeBytes = GiB } };
        using var w = new StringWriter();
        VolumeViews.WriteInspect(v, w);
        var text = w.ToString();
        Assert.Matches(@"(?m)^State\s+:  Detached\r?$", text);
        Assert.Matches(@"(?m)^Format\s+:  ext4 \(not formatted yet\)\r?$", text);
        Assert.Matches(@"(?m)^HA\s+:  1\r?$", text);
        Assert.Matches(@"(?m)^Device Path\s+:  -\r?$", text);
        Assert.Matches(@"(?m)^Creation time\s+:  -\r?$", text);
        Assert.Matches(@"(?m)^Placement\s+:  any node\r?$", text);
    }

    [Fact]
    public void Status_reads_like_pxctl_status()
    {
        var s = new CliApi.StatusResponse
        {
            NodeId = "n1", NodeName = "node-1", Status = "online", ClusterId = "c-1", Version = "0.1.0",
            NodesOnline = 2, NodesTotal = 3, TotalBytes = 100 * GiB, UsedBytes = 5 * GiB, ProvisionedBytes = 30 * GiB,
            VolumeCount = 3, AttachedCount = 1,
        };
        s.Pools.Add(new CliApi.Pool { Id = "p0", IoPriority = CliApi.IoPriority.Medium, TotalBytes = 100 * GiB, UsedBytes = 5 * GiB, ProvisionedBytes = 30 * GiB });
        s.Alerts.Add(new CliApi.Alert { Severity = "warning", Resource = "pool p0", Message = "pool is 90% full", RaisedUnixMs = 1_700_000_000_000 });
        using var w = new StringWriter();
        StatusCommand.Write(s, w);
        var text = w.ToString().ReplaceLineEndings("\n");
        Assert.StartsWith("Status: Slab is operational\n", text, StringComparison.Ordinal);
        Assert.Contains("Node ID: n1\n", text, StringComparison.Ordinal);
        Assert.Contains("Node name: node-1\n", text, StringComparison.Ordinal);
        Assert.Contains("Cluster ID: c-1\n", text, StringComparison.Ordinal);
        Assert.Contains("Nodes: 2 online of 3\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\tp0\s+MEDIUM\s+100 GiB\s+5 GiB\s+30 GiB\s+0$", text);
        Assert.Matches(@"(?m)^\tTotal Capacity\s+:  100 GiB$", text);
        Assert.Contains("Alerts: 1\n", text, StringComparison.Ordinal);
        Assert.Contains("pool is 90% full", text, StringComparison.Ordinal);

        s.Status = "degraded";
        s.Alerts.Clear();
        using var w2 = new StringWriter();
        StatusCommand.Write(s, w2);
        Assert.StartsWith("Status: Slab is not operational (status: degraded)", w2.ToString(), StringComparison.Ordinal);
        Assert.Contains("Alerts: none", w2.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Pool_show_lists_drives_and_measurements()
    {
        var p = new CliApi.Pool
        {
            Id = "p0", IoPriority = CliApi.IoPriority.High, TotalBytes = 100 * GiB, UsedBytes = GiB, ProvisionedBytes = 20 * GiB,
            OvercommitRatio = 2, MeasuredIops = 12345.6, MeasuredMbps = 850.25,
        };
        p.Drives.Add(new CliApi.Drive { Id = "d1", Path = "/dev/sdb", MountPath = "/var/lib/slab/d1", TotalBytes = 100 * GiB, UsedBytes = GiB, Status = "online" });
        using var w = new StringWriter();
        ServiceCommands.Write([p], w);
        var text = w.ToString().ReplaceLineEndings("\n");
        Assert.Contains("Pool ID: p0\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\tIO Priority\s+:  HIGH$", text);
        Assert.Matches(@"(?m)^\tProvisioned\s+:  20 GiB \(may reach 200 GiB, overcommit 2x\)$", text);
        Assert.Matches(@"(?m)^\tMeasured IOPS\s+:  12346 \(4 KiB random write\)$", text);
        Assert.Matches(@"(?m)^\tMeasured MB/s\s+:  850.3 \(1 MiB sequential write\)$", text);
        Assert.Contains("\t1: /dev/sdb, 1 GiB used of 100 GiB, online (mounted at /var/lib/slab/d1)\n", text, StringComparison.Ordinal);

        using var empty = new StringWriter();
        ServiceCommands.Write([], empty);
        Assert.Equal("No storage pools.", empty.ToString().Trim());
    }

    [Fact]
    public void Json_arrays_are_valid_json_with_default_values()
    {
        using var w = new StringWriter();
        Json.WriteArray(w, [AttachedVolume(), new CliApi.Volume { Name = "empty" }]);
        using var doc = System.Text.Json.JsonDocument.Parse(w.ToString());
        Assert.Equal(2, doc.RootElement.GetArrayLength());
        Assert.Equal("db", doc.RootElement[0].GetProperty("name").GetString());
        Assert.Equal("10737418240", doc.RootElement[0].GetProperty("spec").GetProperty("sizeBytes").GetString());
        Assert.Equal("IO_PRIORITY_HIGH", doc.RootElement[0].GetProperty("spec").GetProperty("ioPriority").GetString());
        // Defaults are written, so scripts can rely on every field being present.
        Assert.Equal("0", doc.RootElement[1].GetProperty("usedBytes").GetString());

        using var none = new StringWriter();
        Json.WriteArray(none, []);
        Assert.Equal("[]", none.ToString().Trim());
    }

    [Theory]
    [InlineData(0L, "never")]
    [InlineData(1_700_000_000_000L, "0s ago")]
    [InlineData(1_700_000_005_000L, "0s ago")]
    [InlineData(1_699_999_995_000L, "5s ago")]
    [InlineData(1_699_999_820_000L, "3m ago")]
    [InlineData(1_699_992_800_000L, "2h ago")]
    [InlineData(1_699_654_400_000L, "4d ago")]
    public void Ages_are_rounded_down_and_a_clock_ahead_is_now(long unixMs, string age) =>
        Assert.Equal(age, Formats.Age(unixMs, DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000)));

    [Theory]
    [InlineData("10.0.0.1:9501", "10.0.0.1")]
    [InlineData("node-1.example:9501", "node-1.example")]
    [InlineData("[fd00::1]:9501", "fd00::1")]
    [InlineData("fd00::1", "fd00::1")]
    [InlineData("node-1", "node-1")]
    public void Node_addresses_are_the_host_of_the_api_endpoint(string endpoint, string host) =>
        Assert.Equal(host, ClusterViews.Host(endpoint));

    [Fact]
    public void Clustered_status_shows_the_leader_quorum_members_and_cluster_capacity()
    {
        var s = new CliApi.StatusResponse
        {
            NodeId = "n1", NodeName = "node-1", Status = "online", ClusterId = "c-1", Clustered = true, HasQuorum = true,
            LeaderNodeId = "n2", LeaderNodeName = "node-2", NodesOnline = 2, NodesTotal = 3,
            TotalBytes = 100 * GiB, ClusterTotalBytes = 300 * GiB, ClusterUsedBytes = 7 * GiB,
        };
        s.KvdbMembers.Add(new CliApi.KvdbMember { MemberId = "10.0.0.1:9504", NodeId = "n1", NodeName = "node-1", IsLocal = true, Reachable = true });
        s.KvdbMembers.Add(new CliApi.KvdbMember { MemberId = "10.0.0.2:9504", NodeId = "n2", NodeName = "node-2", IsLeader = true, Reachable = true });
        s.KvdbMembers.Add(new CliApi.KvdbMember { MemberId = "10.0.0.3:9504", Reachable = false });
        using var w = new StringWriter();
        StatusCommand.Write(s, w);
        var text = w.ToString().ReplaceLineEndings("\n");
        Assert.Contains("\tLeader: node-2 (n2)\n\tQuorum: yes\n\tKVDB members: 3 (2 reachable)\n", text, StringComparison.Ordinal);
        Assert.Contains("\tNodes: 2 online of 3\n", text, StringComparison.Ordinal);
        Assert.Matches(@"(?m)^\tMEMBER\s+NODE\s+NAME\s+LEADER\s+REACHABLE$", text);
        Assert.Matches(@"(?m)^\t10\.0\.0\.2:9504\s+n2\s+node-2\s+yes\s+yes$", text);
        Assert.Matches(@"(?m)^\t10\.0\.0\.3:9504\s+-\s+-\s+no\s+no$", text);
        Assert.Matches(@"(?m)^\tTotal Capacity\s+:  300 GiB$", text);
        Assert.Matches(@"(?m)^\tTotal Used\s+:  7 GiB$", text);
        // Provisioning is only summed per node, so the cluster view has none.
        Assert.DoesNotContain("Total Provisioned", text, StringComparison.Ordinal);
        Assert.DoesNotContain("No quorum", text, StringComparison.Ordinal);

        s.HasQuorum = false;
        s.LeaderNodeId = s.LeaderNodeName = "";
        using var lost = new StringWriter();
        StatusCommand.Write(s, lost);
        var lines = lost.ToString().ReplaceLineEndings("\n").Split('\n');
        Assert.StartsWith("No quorum: cluster writes are refused", lines[1], StringComparison.Ordinal);
        Assert.Contains("\tLeader: none (no quorum)\n\tQuorum: NO (cluster writes are refused)\n", lost.ToString().ReplaceLineEndings("\n"), StringComparison.Ordinal);
    }
}
