using Slab.Tests.Infrastructure;
using Xunit;

namespace Slab.Tests.Packaging;

/// <summary>
/// The Kubernetes manifests validate strictly against the Kubernetes API and the snapshot CRDs'
/// schemas (packaging/kubernetes/validate), and the validator's selftest proves it rejects bad ones.
/// </summary>
public sealed class KubernetesManifestTests
{
    [Fact]
    public async Task The_manifests_validate_and_the_validator_rejects_every_bad_manifest()
    {
        var script = Path.Combine(BuildOutputs.RepositoryRoot, "packaging", "kubernetes", "validate");
        var result = await HostCommand.RunAsync(script, [], TimeSpan.FromMinutes(10));
        Assert.True(result.ExitCode == 0, $"validate failed:\n{result}");
        Assert.Matches(@"manifests: \d+ passed, 0 failed", result.Stdout);
        Assert.Matches(@"selftest: [1-9]\d* passed, 0 failed", result.Stdout);
    }
}
