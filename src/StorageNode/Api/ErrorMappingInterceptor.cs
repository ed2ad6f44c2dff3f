using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using Slab.Block;
using Slab.Common;

namespace Slab.Api;

/// <summary>
/// Maps typed failures to gRPC statuses with the failure's message. Anything untyped is a bug or an
/// unexpected I/O failure: logged with its stack and returned as INTERNAL with its message, so the
/// daemon never dies on a client's request.
/// </summary>
public sealed partial class ErrorMappingInterceptor(ILogger<ErrorMappingInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request,
        ServerCallContext context,
        UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw ToRpcException(ex, context);
        }
    }

    /// <summary>Node-to-node streams (group snapshot holds) map their failures the same way.</summary>
    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context,
        DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw ToRpcException(ex, context);
        }
    }

    private RpcException ToRpcException(Exception ex, ServerCallContext context)
    {
        switch (ex)
        {
            case SlabException slab:
                return new RpcException(new Status(ToStatusCode(slab.Code), slab.Message));
            case BlockTargetException block:
                return new RpcException(new Status(ToStatusCode(block.Error), block.Message));
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled"));
            default:
                LogUnexpected(logger, context.Method, ex);
                return new RpcException(new Status(StatusCode.Internal, $"internal error in {context.Method}: {ex.Message}"));
        }
    }

    public static StatusCode ToStatusCode(SlabErrorCode code) => code switch
    {
        SlabErrorCode.InvalidArgument => StatusCode.InvalidArgument,
        SlabErrorCode.NotFound => StatusCode.NotFound,
        SlabErrorCode.AlreadyExists => StatusCode.AlreadyExists,
        SlabErrorCode.FailedPrecondition => StatusCode.FailedPrecondition,
        SlabErrorCode.ResourceExhausted => StatusCode.ResourceExhausted,
        SlabErrorCode.Unavailable => StatusCode.Unavailable,
        _ => StatusCode.Internal,
    };

    public static StatusCode ToStatusCode(BlockError error) => error switch
    {
        BlockError.OutOfRange or BlockError.InvalidArgument => StatusCode.InvalidArgument,
        BlockError.ReadOnly => StatusCode.FailedPrecondition,
        BlockError.NoSpace => StatusCode.ResourceExhausted,
        BlockError.NotSupported => StatusCode.Unimplemented,
        BlockError.Closed => StatusCode.Unavailable,
        BlockError.Fenced => StatusCode.FailedPrecondition,
        _ => StatusCode.Internal,
    };

    [LoggerMessage(Level = LogLevel.Error, Message = "Unexpected failure in {Method}")]
    private static partial void LogUnexpected(ILogger logger, string method, Exception exception);
}
