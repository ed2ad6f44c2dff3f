using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Slab.Cli.Connection;

namespace Slab.Csi;

/// <summary>
/// A refusal with the CSI status code the spec prescribes for it, and a message a person can act on.
/// Thrown by the services; <see cref="CsiErrorInterceptor"/> turns it into the gRPC status.
/// </summary>
internal sealed class CsiException(StatusCode code, string message, Exception? inner = null) : Exception(message, inner)
{
    public StatusCode Code { get; } = code;

    public static CsiException InvalidArgument(string message) => new(StatusCode.InvalidArgument, message);

    public static CsiException NotFound(string message) => new(StatusCode.NotFound, message);

    public static CsiException AlreadyExists(string message) => new(StatusCode.AlreadyExists, message);

    public static CsiException FailedPrecondition(string message) => new(StatusCode.FailedPrecondition, message);

    public static CsiException OutOfRange(string message) => new(StatusCode.OutOfRange, message);

    public static CsiException ResourceExhausted(string message) => new(StatusCode.ResourceExhausted, message);

    /// <summary>A required request field is missing or empty.</summary>
    public static CsiException Missing(string field) => new(StatusCode.InvalidArgument, $"{field} is required");
}

/// <summary>
/// The one place where failures become CSI statuses (the services throw <see cref="CsiException"/>
/// and never build statuses; an <see cref="RpcException"/> reaching here came from a call to slabd): <see cref="CsiException"/> keeps its code;
/// slabd's own statuses pass through (slabd already classifies them the way CSI does: INVALID_ARGUMENT,
/// NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED), prefixed with "slabd: ";
/// slabd unreachable is UNAVAILABLE (the CO retries); anything else is INTERNAL with its message.
/// </summary>
internal sealed partial class CsiErrorInterceptor(ILogger<CsiErrorInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var status = ToStatus(ex);
            LogFailed(logger, context.Method, status.StatusCode, status.Detail);
            throw new RpcException(status);
        }
    }

    /// <summary>The CSI status for a failure.</summary>
    public static Status ToStatus(Exception ex) => ex switch
    {
        CsiException csi => new Status(csi.Code, csi.Message),
        RpcException rpc when ApiConnection.IsUnreachable(rpc, out var reason) => new Status(StatusCode.Unavailable, $"slabd is unreachable: {reason}"),
        RpcException { StatusCode: StatusCode.DeadlineExceeded } => new Status(StatusCode.DeadlineExceeded, "slabd did not answer in time; the operation may still complete, retry it"),
        RpcException { StatusCode: StatusCode.Cancelled } => new Status(StatusCode.Cancelled, "the call was cancelled"),
        RpcException rpc when rpc.StatusCode is StatusCode.Unknown or StatusCode.DataLoss or StatusCode.Unimplemented => new Status(StatusCode.Internal, "slabd: " + rpc.Status.Detail),
        RpcException rpc => new Status(rpc.StatusCode, "slabd: " + rpc.Status.Detail),
        OperationCanceledException => new Status(StatusCode.Cancelled, "the call was cancelled"),
        _ => new Status(StatusCode.Internal, $"{ex.GetType().Name}: {ex.Message}"),
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "{Method} failed: {Code} {Detail}")]
    private static partial void LogFailed(ILogger logger, string method, StatusCode code, string detail);
}
