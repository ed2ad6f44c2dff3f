using Slab.Hosting;

namespace Slab;

/// <summary>slabd entry point: exit 0 after a clean stop, 1 on a start-up or runtime failure, 2 on bad usage.</summary>
public static class Program
{
    public static Task<int> Main(string[] args) => SlabdHost.RunAsync(args);
}
