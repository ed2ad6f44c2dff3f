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
        catch (RpcException)
        {
            throw;
        }
        catch (SlabException ex)
        {
            throw new RpcException(new Status(ToStatusCode(ex.Code), ex.Message));
        }
        catch (BlockTargetException ex)
        {
            throw new RpcException(new Status(ToStatusCode(ex.Error), ex.Message));
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(new Status(StatusCode.Cancelled, "the call was cancelled"));
        }
        catch (Exception ex)
        {
            LogUnexpected(logger, context.Method, ex);
            throw new RpcException(new Status(StatusCode.Internal, $"internal error in {context.Method}: {ex.Message}"));
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
