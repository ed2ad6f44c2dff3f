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

        // Against a running cluster (bench/cluster/run starts one): Volumes.Create latency through one node.
        if (args is ["cluster-create-latency", .. var rest])
        {
            Environment.ExitCode = ClusterCreateLatency.Run(rest);
            return;
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
