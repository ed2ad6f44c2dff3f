extern alias cli;

using cli::Slab.Cli.Connection;
using Xunit;

namespace Slab.Tests.Cli;

public sealed class CliEndpointTests
{
    [Theory]
    [InlineData("unix:///run/slab/api.sock", "/run/slab/api.sock")]
    [InlineData("unix:/run/slab/api.sock", "/run/slab/api.sock")]
    [InlineData("unix:relative.sock", "relative.sock")]
    [InlineData("UNIX:///tmp/x.sock", "/tmp/x.sock")]
    [InlineData("/tmp/x.sock", "/tmp/x.sock")]
    public void Unix_sockets(string text, string path)
    {
        Assert.True(Endpoint.TryParse(text, out var endpoint, out var error), error);
        Assert.True(endpoint.IsUnixSocket);
        Assert.Equal(path, endpoint.SocketPath);
        Assert.Equal(text, endpoint.Original);
    }

    [Theory]
    [InlineData("tcp://10.0.0.1:9501", "http://10.0.0.1:9501/")]
    [InlineData("http://node-1:9501", "http://node-1:9501/")]
    [InlineData("http://node-1:9501/", "http://node-1:9501/")]
    [InlineData("https://node-1.example.com:9501", "https://node-1.example.com:9501/")]
    [InlineData("localhost:9501", "http://localhost:9501/")]
    [InlineData("127.0.0.1:1", "http://127.0.0.1:1/")]
    [InlineData("[::1]:9501", "http://[::1]:9501/")]
    [InlineData("tcp://[fe80::1]:65535", "http://[fe80::1]:65535/")]
    public void Tcp_addresses(string text, string address)
    {
        Assert.True(Endpoint.TryParse(text, out var endpoint, out var error), error);
        Assert.False(endpoint.IsUnixSocket);
        Assert.Equal(address, endpoint.Address!.ToString());
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("   ", "empty")]
    [InlineData("unix://", "path is empty")]
    [InlineData("unix:", "path is empty")]
    [InlineData("localhost", "expected host:port")]
    [InlineData("tcp://localhost", "expected host:port")]
    [InlineData("localhost:0", "invalid port")]
    [InlineData("localhost:65536", "invalid port")]
    [InlineData("localhost:http", "invalid port")]
    [InlineData(":9501", "invalid host")]
    [InlineData("::1:9501", "IPv6")]
    [InlineData("[::1]9501", "[ipv6]:port")]
    [InlineData("ftp://host:21", "unsupported scheme")]
    [InlineData("bad host:9501", "invalid host")]
    public void Invalid_endpoints(string text, string reason)
    {
        Assert.False(Endpoint.TryParse(text, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }
}
