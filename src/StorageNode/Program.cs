using Slab.Hosting;

namespace Slab;

/// <summary>slabd entry point: exit 0 after a clean stop, 1 on a start-up or runtime failure, 2 on bad usage.</summary>
public static class Program
{
    /// <summary>
    /// Socket completions run on the epoll thread that saw them instead of being queued to the thread
    /// pool: the NBD and replica connections' receive loops only parse and hand each request to a
    /// pooled slot (they never block), so the hop per completion is pure cost — measured on 2 cores
    /// with the thread pool's spinning also off (StorageNode.csproj): about 30 % less slabd CPU per
    /// 4 KiB I/O and up to 1.6× on 1 MiB sequential I/O (bench/results/findings.md). The runtime
    /// reads this variable once, when the first socket is used, so it is set before anything starts;
    /// an operator's own value (e.g. 0) wins.
    /// </summary>
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static Task<int> Main(string[] args)
    {
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        }

        return SlabdHost.RunAsync(args);
    }
}
