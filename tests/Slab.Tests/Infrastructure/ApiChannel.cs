extern alias cli;
using Grpc.Net.Client;
using cli::Slab.Cli.Connection;

namespace Slab.Tests.Infrastructure;

/// <summary>A gRPC channel to a node's unix API socket (slabctl's own), for tests that make many calls quickly.</summary>
public static class ApiChannel
{
    public static GrpcChannel ForUnixSocket(string socketPath)
        => Endpoint.TryParse("unix://" + socketPath, out var endpoint, out var error)
            ? ApiConnection.Open(endpoint)
            : throw new ArgumentException(error, nameof(socketPath));
}
