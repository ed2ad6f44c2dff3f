using System.Text.RegularExpressions;
using Xunit;

namespace Slab.Tests;

/// <summary>
/// The layers of slabd depend downward only (docs/architecture.md, "Layers"): each rule names a
/// source folder and the namespaces its files must not use (a using directive or a qualified name).
/// </summary>
public sealed partial class LayerTests
{
    public static TheoryData<string, string> Forbidden => new()
    {
        { "Block", "Slab.Volumes Slab.Cluster Slab.Api Slab.Replication Slab.Store Slab.Frontend Slab.Host Slab.Metrics" },
        { "Cluster/State", "Slab.Volumes Slab.Api Slab.Replication Slab.Frontend Slab.Host Slab.Metrics" },
        { "Cluster/Membership", "Slab.Replication Slab.Volumes Slab.Api Slab.Store Slab.Metrics" },
        { "Cluster/Placement", "Slab.Volumes Slab.Api Slab.Replication Slab.Metrics" },
        { "Cluster/Node", "Slab.Metrics Slab.Hosting" },
        { "Volumes", "Slab.Api Slab.Cluster Slab.Frontend Slab.Metrics" },
        { "Replication", "Slab.Api Slab.Cluster Slab.Volumes Slab.Metrics" },
        { "Store", "Slab.Api Slab.Cluster Slab.Volumes Slab.Replication Slab.Metrics" },
        { "Frontend", "Slab.Api Slab.Cluster Slab.Store Slab.Metrics" },
        { "Host", "Slab.Metrics" },
        { "Common", "Slab.Metrics" },
        // Metrics sits beside Api: it reads Volumes, Store, Cluster, Frontend, Replication and Common, and neither uses the other.
        { "Metrics", "Slab.Api Slab.Hosting Slab.Host" },
        { "Api", "Slab.Metrics" },
    };

    [Theory]
    [MemberData(nameof(Forbidden))]
    public void A_layer_does_not_use_the_layers_above_it(string folder, string namespaces)
    {
        var root = Path.Combine(RepositoryRoot(), "src", "StorageNode", folder);
        var files = Directory.GetFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .ToList();
        Assert.NotEmpty(files);
        var violations = new List<string>();
        foreach (var ns in namespaces.Split(' '))
        {
            var use = new Regex($@"(using {Regex.Escape(ns)}(\.|;))|([^A-Za-z0-9_.]{Regex.Escape(ns)}\.[A-Z])");
            foreach (var file in files)
            {
                var lines = File.ReadAllLines(file);
                for (var i = 0; i < lines.Length; i++)
                {
                    var code = lines[i].TrimStart();
                    if (!code.StartsWith("//", StringComparison.Ordinal) && use.IsMatch(lines[i]))
                    {
                        violations.Add($"{Path.GetRelativePath(root, file)}:{i + 1} uses {ns}: {code}");
                    }
                }
            }
        }

        Assert.True(violations.Count == 0, $"{folder} must not depend on {namespaces}:\n{string.Join('\n', violations)}");
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Storage.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException($"no Storage.sln above {AppContext.BaseDirectory}");
    }
}
