using Slab.Api.Docker;
using Slab.Common;
using Xunit;
using V1 = Slab.Api.V1;

namespace Slab.Tests.Docker;

/// <summary>The Docker plugin's options (<c>--opt</c>, PX's names) and PX's inline spec in the volume name.</summary>
public sealed class DockerOptionsTests
{
    private static Dictionary<string, string> Opts(params string[] pairs)
        => pairs.Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);

    [Fact]
    public void PlainNameWithoutOptionsIsOneGibExt4Default()
    {
        var spec = DockerVolumeOptions.Parse("data", null);
        Assert.Equal("data", spec.Name);
        Assert.Equal(1UL << 30, spec.Spec.SizeBytes);
        Assert.Equal(0U, spec.Spec.Repl);
        Assert.Equal("", spec.Spec.Fs);
        Assert.Null(spec.Parent);
    }

    [Theory]
    [InlineData("2G", 2L << 30)]
    [InlineData("2GiB", 2L << 30)]
    [InlineData("10", 10L << 30)]
    [InlineData("512M", 512L << 20)]
    [InlineData("1T", 1L << 40)]
    public void SizesUseSlabctlsGrammar(string size, long bytes)
        => Assert.Equal((ulong)bytes, DockerVolumeOptions.Parse("v", Opts("size=" + size)).Spec.SizeBytes);

    [Fact]
    public void EveryOptionMapsOntoTheSpec()
    {
        var spec = DockerVolumeOptions.Parse("v", Opts("size=5G", "repl=2", "fs=XFS", "io_priority=high", "nodes=n1;n2,n3", "label=app=pg;tier=db", "block_size=4096"));
        Assert.Equal(5UL << 30, spec.Spec.SizeBytes);
        Assert.Equal(2U, spec.Spec.Repl);
        Assert.Equal("xfs", spec.Spec.Fs);
        Assert.Equal(V1.IoPriority.High, spec.Spec.IoPriority);
        Assert.Equal(["n1", "n2", "n3"], spec.Spec.Nodes);
        Assert.Equal("pg", spec.Spec.Labels["app"]);
        Assert.Equal("db", spec.Spec.Labels["tier"]);
    }

    [Fact]
    public void QosOptionsUsePxctlsSyntaxAndSemicolonsInAnInlineSpec()
    {
        var limits = DockerVolumeOptions.Parse("v", Opts("max_iops=1000,500", "max_bandwidth=40")).Spec.Limits;
        Assert.Equal((1000UL, 500UL, 40_000_000UL, 40_000_000UL), (limits.MaxReadIops, limits.MaxWriteIops, limits.MaxReadBytesPerSecond, limits.MaxWriteBytesPerSecond));
        var inline = DockerVolumeOptions.Parse("name=pg,max_iops=0;250", null).Spec.Limits;
        Assert.Equal((0UL, 250UL), (inline.MaxReadIops, inline.MaxWriteIops));
        var bad = Assert.Throws<SlabException>(() => DockerVolumeOptions.Parse("v", Opts("max_iops=fast")));
        Assert.Contains("max_iops=fast", bad.Message, StringComparison.Ordinal);
        var clone = Assert.Throws<SlabException>(() => DockerVolumeOptions.Parse("v", Opts("parent=base", "max_iops=10")));
        Assert.Contains("drop max_iops", clone.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InlineSpecNamesTheVolumeAndCarriesOptions()
    {
        var spec = DockerVolumeOptions.Parse("name=pg,size=10G,repl=3,fs=xfs,label=app=pg;tier=db", null);
        Assert.Equal("pg", spec.Name);
        Assert.Equal(10UL << 30, spec.Spec.SizeBytes);
        Assert.Equal(3U, spec.Spec.Repl);
        Assert.Equal("xfs", spec.Spec.Fs);
        Assert.Equal(2, spec.Spec.Labels.Count);
        Assert.Equal("pg", DockerVolumeOptions.ResolveName("size=10G,name=pg"));
        Assert.True(DockerVolumeOptions.IsInlineSpec("size=1,name=x"));
        Assert.False(DockerVolumeOptions.IsInlineSpec("pg"));
    }

    [Fact]
    public void InlineSpecAndOptsMergeWhenTheyAgree()
    {
        Assert.Equal(2U, DockerVolumeOptions.Parse("name=pg,repl=2", Opts("repl=2", "size=3G")).Spec.Repl);
        var e = Refused(() => DockerVolumeOptions.Parse("name=pg,repl=2", Opts("repl=3")));
        Assert.Contains("given twice with different values", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ParentClonesAndRefusesWhatTheParentFixes()
    {
        var clone = DockerVolumeOptions.Parse("copy", Opts("parent=pg@snap1", "label=a=b"));
        Assert.Equal("pg@snap1", clone.Parent);
        Assert.Equal("b", clone.Labels["a"]);
        Assert.Contains("drop size", Refused(() => DockerVolumeOptions.Parse("copy", Opts("parent=pg", "size=2G"))).Message, StringComparison.Ordinal);
        Assert.Contains("parent=", Refused(() => DockerVolumeOptions.Parse("copy", Opts("parent=bad name"))).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("size", "abc", "size=abc")]
    [InlineData("size", "1.5G", "fractional")]
    [InlineData("size", "0", "positive")]
    [InlineData("repl", "4", "1, 2 or 3")]
    [InlineData("repl", "two", "1, 2 or 3")]
    [InlineData("fs", "btrfs", "ext4 or xfs")]
    [InlineData("fs", "none", "need a filesystem")]
    [InlineData("io_priority", "urgent", "high, medium or low")]
    [InlineData("block_size", "8192", "4 KiB")]
    [InlineData("block_size", "64k", "4 KiB")]
    [InlineData("zones", ";", "names no zone")]
    [InlineData("racks", ",", "names no rack")]
    [InlineData("snap_schedule", "daily=12:00", "snapshot schedules do not exist")]
    [InlineData("shared", "true", "PX option Slab does not support")]
    [InlineData("colour", "blue", "unknown option colour")]
    [InlineData("label", "novalue", "not key=value")]
    [InlineData("nodes", ";", "names no node")]
    [InlineData("size", "", "empty value")]
    public void BadOptionsAreRefusedWithTheReason(string key, string value, string expected)
    {
        var e = Refused(() => DockerVolumeOptions.Parse("v", new Dictionary<string, string> { [key] = value }));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("4096")]
    [InlineData("4K")]
    [InlineData("4KiB")]
    [InlineData("4")]
    public void TheEnginesBlockSizeIsAccepted(string value)
        => Assert.Equal("v", DockerVolumeOptions.Parse("v", Opts("block_size=" + value)).Name);

    [Theory]
    [InlineData("name=pg,size", "not key=value")]
    [InlineData("name=pg,name=pg2", "name= twice")]
    [InlineData("name=pg,size=1G,size=1G", "twice in the inline spec")]
    [InlineData("name=,size=1G", "invalid volume name")]
    [InlineData("name=p g", "invalid volume name")]
    [InlineData("size=1G,repl=2", "needs a name= item")]
    [InlineData("bad/name", "invalid volume name")]
    public void BadInlineSpecsAndNamesAreRefused(string dockerName, string expected)
        => Assert.Contains(expected, Refused(() => DockerVolumeOptions.Parse(dockerName, null)).Message, StringComparison.Ordinal);

    [Fact]
    public void NameIsNotAnOption()
        => Assert.Contains("--opt name", Refused(() => DockerVolumeOptions.Parse("v", Opts("name=w"))).Message, StringComparison.Ordinal);

    private static SlabException Refused(Func<object> parse)
    {
        var e = Assert.Throws<SlabException>(parse);
        Assert.Equal(SlabErrorCode.InvalidArgument, e.Code);
        return e;
    }
}
