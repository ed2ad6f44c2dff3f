extern alias csi;
using Grpc.Core;
using Slab.Tests.Infrastructure;
using Xunit;
using CapacityRanges = csi::Slab.Csi.Controller.CapacityRanges;
using CsiException = csi::Slab.Csi.CsiException;
using CsiNames = csi::Slab.Csi.Controller.CsiNames;
using CsiOptions = csi::Slab.Csi.CsiOptions;
using PageTokens = csi::Slab.Csi.Controller.PageTokens;
using VolumeParameters = csi::Slab.Csi.Controller.VolumeParameters;

namespace Slab.Tests.Csi;

/// <summary>slab-csi's rules without a slabd: parameters, capacity ranges, names, page tokens, options.</summary>
public sealed class CsiUnitTests
{
    private static readonly Dictionary<string, string> None = [];

    [Fact]
    public void StorageClass_parameters_parse_in_PX_names_and_the_COs_metadata_becomes_labels()
    {
        var parsed = VolumeParameters.Parse(
            new Dictionary<string, string>
            {
                ["repl"] = "3", ["fs"] = "XFS", ["priority_io"] = "high", ["zones"] = "z1, z2,z1", ["racks"] = "r1",
                ["nodes"] = "n1,n2", ["label"] = "app=db, tier=1", ["block_size"] = "4k", ["secure"] = "false",
                ["csi.storage.k8s.io/pvc/name"] = "data-0", ["csi.storage.k8s.io/pvc/namespace"] = "lab", ["csi.storage.k8s.io/pv/name"] = "pvc-1",
                ["csi.storage.k8s.io/something-new"] = "x",
            },
            new Dictionary<string, string> { ["repl"] = "2" });
        Assert.Equal(2u, parsed.Repl); // mutable parameters override
        Assert.Equal("xfs", parsed.Fs);
        Assert.Equal(csi::Slab.Api.V1.IoPriority.High, parsed.IoPriority);
        Assert.Equal(["z1", "z2"], parsed.Zones);
        Assert.Equal(["n1", "n2"], parsed.Nodes);
        Assert.Equal("db", parsed.Labels["app"]);
        Assert.Equal("1", parsed.Labels["tier"]);
        Assert.Equal("data-0", parsed.Labels["pvc"]);
        Assert.Equal("lab", parsed.Labels["namespace"]);
        Assert.Equal("pvc-1", parsed.Labels["pv"]);
    }

    [Theory]
    [InlineData("repl", "0", "1, 2 or 3")]
    [InlineData("repl", "three", "1, 2 or 3")]
    [InlineData("fs", "btrfs", "ext4, xfs or none")]
    [InlineData("io_priority", "urgent", "high, medium or low")]
    [InlineData("zones", "a,,b", "without empty entries")]
    [InlineData("label", "novalue", "key=value")]
    [InlineData("label", "pvc=mine", "set by slab-csi")]
    [InlineData("block_size", "8k", "4 KiB blocks")]
    [InlineData("secure", "true", "encrypted volumes do not exist")]
    [InlineData("secure", "maybe", "true or false")]
    [InlineData("snap_schedule", "daily", "schedules do not exist")]
    [InlineData("replicas", "3", "unknown parameter 'replicas'")]
    public void Bad_parameters_are_refused_with_what_to_give(string key, string value, string expected)
    {
        var e = Assert.Throws<CsiException>(() => VolumeParameters.Parse(new Dictionary<string, string> { [key] = value }, None));
        Assert.Equal(StatusCode.InvalidArgument, e.Code);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Only_repl_io_priority_and_qos_are_mutable()
    {
        Assert.Equal(3u, VolumeParameters.ParseMutable(new Dictionary<string, string> { ["repl"] = "3" }).Repl);
        var e = Assert.Throws<CsiException>(() => VolumeParameters.ParseMutable(new Dictionary<string, string> { ["zones"] = "z1" }));
        Assert.Contains("repl, io_priority, priority_io, max_iops, max_bandwidth", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Qos_parameters_parse_in_pxctl_syntax_and_mutable_ones_override_only_what_they_name()
    {
        var parsed = VolumeParameters.Parse(
            new Dictionary<string, string> { ["max_iops"] = "1000,500", ["max_bandwidth"] = "40" },
            new Dictionary<string, string> { ["max_iops"] = "0,100" });
        Assert.Equal((0UL, 100UL), (parsed.Limits!.MaxReadIops, parsed.Limits.MaxWriteIops));
        Assert.Equal((40_000_000UL, 40_000_000UL), (parsed.Limits.MaxReadBytesPerSecond, parsed.Limits.MaxWriteBytesPerSecond));

        var mutable = VolumeParameters.ParseMutable(new Dictionary<string, string> { ["max_bandwidth"] = "10,0" });
        Assert.False(mutable.Limits!.HasMaxReadIops);
        Assert.Equal(10_000_000UL, mutable.Limits.MaxReadBytesPerSecond);

        foreach (var bad in new[] { "fast", "1,2,3", "-1" })
        {
            var e = Assert.Throws<CsiException>(() => VolumeParameters.Parse(new Dictionary<string, string> { ["max_iops"] = bad }, None));
            Assert.Equal(StatusCode.InvalidArgument, e.Code);
            Assert.Contains("parameter max_iops", e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(0, 0, 0, 1L << 30)]
    [InlineData(1, 0, 0, 4096)]
    [InlineData(4096, 0, 0, 4096)]
    [InlineData(4097, 0, 0, 8192)]
    [InlineData(0, 100_000, 0, 98_304)]
    [InlineData(0, 0, 10_000, 12_288)]
    [InlineData(5000, 0, 10_000, 12_288)]
    [InlineData(20_000, 0, 10_000, 20_480)]
    public void Capacity_ranges_round_up_to_4_KiB(long required, long limit, long minimum, long expected)
    {
        var range = required == 0 && limit == 0 ? null : new csi::Csi.V1.CapacityRange { RequiredBytes = required, LimitBytes = limit };
        Assert.Equal(expected, CapacityRanges.Resolve(range, minimum));
    }

    [Theory]
    [InlineData(4097, 8000, 0, StatusCode.OutOfRange)]
    [InlineData(0, 100, 0, StatusCode.OutOfRange)]
    [InlineData(0, 8192, 10_000, StatusCode.OutOfRange)]
    [InlineData(8192, 4096, 0, StatusCode.InvalidArgument)]
    [InlineData(-1, 0, 0, StatusCode.InvalidArgument)]
    [InlineData(1L << 50, 0, 0, StatusCode.OutOfRange)]
    public void Impossible_capacity_ranges_are_refused(long required, long limit, long minimum, StatusCode code)
    {
        var e = Assert.Throws<CsiException>(() => CapacityRanges.Resolve(new csi::Csi.V1.CapacityRange { RequiredBytes = required, LimitBytes = limit }, minimum));
        Assert.Equal(code, e.Code);
    }

    [Fact]
    public void CSI_names_map_to_stable_slabd_names_and_group_names_never_collide_with_them()
    {
        Assert.Equal("pvc-0a1b", CsiNames.ToSlab("pvc-0a1b"));
        var odd = CsiNames.ToSlab("my volume/1");
        Assert.StartsWith("csi-", odd, StringComparison.Ordinal);
        Assert.Equal(odd, CsiNames.ToSlab("my volume/1"));
        Assert.NotEqual(odd, CsiNames.ToSlab("my volume/2"));
        Assert.StartsWith("csi-", CsiNames.ToSlab("group.x"), StringComparison.Ordinal); // never a group member's name
        Assert.Equal("group.groupsnapshot-1", CsiNames.ToGroupSnapshotName("groupsnapshot-1"));
        Assert.True(CsiNames.IsGroupSnapshotName(CsiNames.ToGroupSnapshotName(new string('x', 200))));
        Assert.True(CsiNames.ToGroupSnapshotName(new string('x', 200)).Length <= 128);
        Assert.True(CsiNames.TrySplitSnapshotId(CsiNames.SnapshotId("v1", "s1"), out var volume, out var snapshot));
        Assert.Equal(("v1", "s1"), (volume, snapshot));
        Assert.False(CsiNames.TrySplitSnapshotId("no-at-sign", out _, out _));
        Assert.False(CsiNames.TrySplitSnapshotId("@s", out _, out _));
    }

    [Fact]
    public void Pages_follow_ids_and_survive_deletions_before_the_token()
    {
        string[] ids = ["0a", "0b", "0c", "0d", "0e"];
        var (first, token) = PageTokens.Page(ids, x => x, "", 2);
        Assert.Equal(["0a", "0b"], first);
        Assert.Equal("0c", token);
        string[] afterDelete = ["0a", "0d", "0e"]; // 0b and 0c deleted between pages
        var (second, next) = PageTokens.Page(afterDelete, x => x, token, 2);
        Assert.Equal(["0d", "0e"], second);
        Assert.Equal("", next);
        Assert.Equal(StatusCode.Aborted, CsiStatus(() => PageTokens.Page(ids, x => x, "ZZ!", 2)));
        Assert.Equal(StatusCode.InvalidArgument, CsiStatus(() => PageTokens.Page(ids, x => x, "", -1)));
    }

    [Fact]
    public void The_command_line_is_parsed_strictly()
    {
        var options = CsiOptions.Parse(["--endpoint", "unix:///csi/csi.sock", "--mode", "node", "--node-id", "k1", "--slabd", "127.0.0.1:9501"]);
        Assert.Equal("/csi/csi.sock", options.Endpoint);
        Assert.True(options.ServesNode);
        Assert.False(options.ServesController);
        Assert.Equal("k1", options.NodeId);
        Assert.Equal(new Uri("http://127.0.0.1:9501"), options.Slabd.Address);
        Assert.Contains("--mode", Assert.Throws<FormatException>(() => CsiOptions.Parse(["--mode", "both"])).Message, StringComparison.Ordinal);
        Assert.Contains("unix socket", Assert.Throws<FormatException>(() => CsiOptions.Parse(["--endpoint", "tcp://x:1"])).Message, StringComparison.Ordinal);
        Assert.Contains("unknown option", Assert.Throws<FormatException>(() => CsiOptions.Parse(["--bogus"])).Message, StringComparison.Ordinal);
        Assert.Contains("needs a value", Assert.Throws<FormatException>(() => CsiOptions.Parse(["--node-id"])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Probe_says_not_ready_and_calls_fail_unavailable_while_slabd_is_unreachable()
    {
        var nowhere = Path.Combine("/tmp", "slab-nowhere-" + Guid.NewGuid().ToString("N")[..8] + ".sock");
        await using var plugin = await CsiPlugin.StartAsync("unix://" + nowhere);
        Assert.False((await plugin.Identity.ProbeAsync(new global::Csi.V1.ProbeRequest())).Ready);
        var e = await Assert.ThrowsAsync<RpcException>(() => plugin.Controller.ListVolumesAsync(new global::Csi.V1.ListVolumesRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unavailable, e.StatusCode);
        Assert.Contains("slabd is unreachable", e.Status.Detail, StringComparison.Ordinal);
    }

    private static StatusCode CsiStatus(Action action) => Assert.Throws<CsiException>(action).Code;
}
