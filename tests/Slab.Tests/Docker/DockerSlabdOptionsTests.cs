using Slab.Hosting;
using Xunit;

namespace Slab.Tests.Docker;

/// <summary>slabd's Docker plugin flags.</summary>
public sealed class DockerSlabdOptionsTests
{
    private static SlabdOptions Parse(params string[] extra) => SlabdOptions.Parse(["--data-dir", "/d", "--run-dir", "/r", "--drive", "/dev/sdb", .. extra]);

    [Fact]
    public void DefaultIsDecidedByDockersPluginDirectory()
    {
        var options = Parse();
        Assert.Null(options.DockerPlugin);
        Assert.Equal("/run/docker/plugins/slab.sock", options.DockerPluginSocketPath);
        Assert.Equal(Directory.Exists("/run/docker/plugins"), options.DockerPluginEnabled);
    }

    [Fact]
    public void FlagsTurnItOnOrOffAndASocketPathTurnsItOn()
    {
        Assert.True(Parse("--docker-plugin").DockerPluginEnabled);
        Assert.False(Parse("--no-docker-plugin").DockerPluginEnabled);
        var custom = Parse("--docker-plugin-socket", "/tmp/x/slab-test.sock");
        Assert.True(custom.DockerPluginEnabled);
        Assert.Equal("/tmp/x/slab-test.sock", custom.DockerPluginSocketPath);
    }

    [Theory]
    [InlineData("--docker-plugin", "--no-docker-plugin")]
    [InlineData("--no-docker-plugin", "--docker-plugin-socket=/tmp/s.sock")]
    [InlineData("--docker-plugin-socket", "relative.sock")]
    [InlineData("--docker-plugin=yes")]
    public void ContradictionsAndBadPathsAreUsageErrors(params string[] flags)
        => Assert.Throws<FormatException>(() => Parse(flags));
}
