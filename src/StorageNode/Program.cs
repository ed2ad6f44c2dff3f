namespace Slab;

/// <summary>slabd entry point.</summary>
public static class Program
{
    public static int Main(string[] args) => args.Length >= 0 ? 0 : 1;
}
