using BenchmarkDotNet.Running;

namespace Slab.Bench;

public static class Program
{
    public static void Main(string[] args)
    {
        // A measurement BenchmarkDotNet does not fit: retained memory of the cluster state at scale.
        if (args is ["cluster-scale-memory"])
        {
            ClusterScaleMemory.Run(Console.Out);
            return;
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
