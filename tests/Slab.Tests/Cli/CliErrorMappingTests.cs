extern alias cli;

using System.Net.Http;
using System.Net.Sockets;
using cli::Slab.Cli;
using cli::Slab.Cli.Connection;
using Grpc.Core;
using Xunit;

namespace Slab.Tests.Cli;

public sealed class CliErrorMappingTests
{
    private static Endpoint Parse(string text)
    {
        Assert.True(Endpoint.TryParse(text, out var endpoint, out var error), error);
        return endpoint;
    }

    [Fact]
    public void Server_statuses_print_the_servers_message()
    {
        var endpoint = Parse("localhost:9501");
        Assert.Equal("Error: volume \"x\" not found", CliApp.Describe(new RpcException(new Status(StatusCode.NotFound, "volume \"x\" not found")), endpoint));
        // slabd itself answering UNAVAILABLE (shutting down) is not "unreachable".
        Assert.Equal("Error: slabd is shutting down", CliApp.Describe(new RpcException(new Status(StatusCode.Unavailable, "slabd is shutting down")), endpoint));
        Assert.Equal("Error: Internal", CliApp.Describe(new RpcException(new Status(StatusCode.Internal, "")), endpoint));
        Assert.Equal("Error: slabd did not answer in time (deadline exceeded)", CliApp.Describe(new RpcException(new Status(StatusCode.DeadlineExceeded, "Deadline Exceeded")), endpoint));
        Assert.Equal("Error: interrupted", CliApp.Describe(new RpcException(new Status(StatusCode.Cancelled, "Call canceled by the client.")), endpoint));
        // A slabd without the service or method (older than slabctl) answers UNIMPLEMENTED.
        Assert.Equal("Error: slabd at localhost:9501 does not support this command (is it older than slabctl?)",
            CliApp.Describe(new RpcException(new Status(StatusCode.Unimplemented, "Service is unimplemented.")), endpoint));
    }

    [Fact]
    public void Connection_failures_are_unreachable_with_the_socket_reason()
    {
        var refused = new HttpRequestException("Connection refused (localhost:9501)", new SocketException((int)SocketError.ConnectionRefused));
        var ex = new RpcException(new Status(StatusCode.Unavailable, "Error connecting to subchannel.", refused));
        Assert.True(ApiConnection.IsUnreachable(ex, out var reason));
        Assert.Equal(new SocketException((int)SocketError.ConnectionRefused).Message, reason);
        Assert.Equal($"Error: cannot reach slabd at localhost:9501: {reason}. Is slabd running?", CliApp.Describe(ex, Parse("localhost:9501")));

        var denied = new RpcException(new Status(StatusCode.Unavailable, "x", new HttpRequestException("x", new SocketException((int)SocketError.AccessDenied))));
        Assert.True(ApiConnection.IsUnreachable(denied, out var deniedReason));
        Assert.EndsWith("(the local API socket is root-only; run as root)", deniedReason, StringComparison.Ordinal);
    }
}
