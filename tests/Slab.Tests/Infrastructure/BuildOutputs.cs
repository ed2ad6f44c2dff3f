namespace Slab.Tests.Infrastructure;

/// <summary>
/// Where the programs under test were built: each runs from its own output directory (with its own
/// dependencies), in the same configuration as the tests (Debug or Release).
/// </summary>
public static class BuildOutputs
{
    private static readonly Lazy<(string Root, string Configuration)> Layout = new(Locate);

    public static string RepositoryRoot => Layout.Value.Root;

    public static string Slabd => Path.Combine(RepositoryRoot, "src", "StorageNode", "bin", Layout.Value.Configuration, "net10.0", "slabd.dll");

    public static string Slabctl => Path.Combine(RepositoryRoot, "src", "Cli", "bin", Layout.Value.Configuration, "net10.0", "slabctl.dll");

    public static string SlabCsi => Path.Combine(RepositoryRoot, "src", "Csi", "bin", Layout.Value.Configuration, "net10.0", "slab-csi.dll");

    private static (string, string) Locate()
    {
        // tests/Slab.Tests/bin/CONFIG/net10.0/
        var baseDirectory = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd('/'));
        var configuration = baseDirectory.Parent?.Name ?? "Debug";
        for (var dir = baseDirectory; dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Storage.sln")))
            {
                return (dir.FullName, configuration);
            }
        }

        throw new InvalidOperationException($"cannot find Storage.sln above {AppContext.BaseDirectory}");
    }
}
