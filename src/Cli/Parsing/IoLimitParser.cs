using Slab.Api.V1;
using IoLimitSyntax = Slab.Common.IoLimitSyntax;

namespace Slab.Cli.Parsing;

/// <summary><c>--max_iops R,W</c> and <c>--max_bandwidth R,W</c> (MB/s) into the API's <see cref="IoLimits"/>, through slabd's own grammar (<see cref="IoLimitSyntax"/>).</summary>
internal static class IoLimitParser
{
    /// <summary>The limits the flags give; null when neither is set. In an update, a flag not given leaves those limits as they are.</summary>
    /// <exception cref="UsageException">A value does not parse.</exception>
    public static IoLimits? Parse(string? maxIops, string? maxBandwidth)
    {
        if (maxIops is null && maxBandwidth is null)
            return null;

        var limits = new IoLimits();
        if (maxIops is not null)
        {
            if (!IoLimitSyntax.TryParsePair(maxIops, IoLimitSyntax.MaxIops, out var read, out var write, out var error))
                throw new UsageException($"invalid value \"{maxIops}\" for --max_iops: {error}");
            limits.MaxReadIops = (ulong)read;
            limits.MaxWriteIops = (ulong)write;
        }

        if (maxBandwidth is not null)
        {
            if (!IoLimitSyntax.TryParsePair(maxBandwidth, IoLimitSyntax.MaxMegabytesPerSecond, out var read, out var write, out var error))
                throw new UsageException($"invalid value \"{maxBandwidth}\" for --max_bandwidth: {error}");
            limits.MaxReadBytesPerSecond = (ulong)(read * IoLimitSyntax.BytesPerMegabyte);
            limits.MaxWriteBytesPerSecond = (ulong)(write * IoLimitSyntax.BytesPerMegabyte);
        }

        return limits;
    }

    /// <summary>What inspect shows: "none", or the limits set.</summary>
    public static string Describe(IoLimits? limits) => limits is null
        ? "none"
        : IoLimitSyntax.Describe((long)limits.MaxReadIops, (long)limits.MaxWriteIops, (long)limits.MaxReadBytesPerSecond, (long)limits.MaxWriteBytesPerSecond);
}
