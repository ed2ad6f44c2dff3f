using System.Reflection;
using Csi.V1;
using Grpc.Core;
using Slab.Cli.Connection;
using Slab.Csi.Slabd;

namespace Slab.Csi.Identity;

/// <summary>CSI Identity: the plugin's name and version, what it serves, and whether slabd answers.</summary>
internal sealed class IdentityService(CsiOptions options, SlabdApi slabd) : global::Csi.V1.Identity.IdentityBase
{
    public static string Version { get; } =
        typeof(IdentityService).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public override Task<GetPluginInfoResponse> GetPluginInfo(GetPluginInfoRequest request, ServerCallContext context) =>
        Task.FromResult(new GetPluginInfoResponse { Name = CsiOptions.DriverName, VendorVersion = Version });

    public override Task<GetPluginCapabilitiesResponse> GetPluginCapabilities(GetPluginCapabilitiesRequest request, ServerCallContext context)
    {
        var response = new GetPluginCapabilitiesResponse();
        if (options.ServesController)
        {
            response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.ControllerService));
            response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.GroupControllerService));
        }

        response.Capabilities.Add(Service(PluginCapability.Types.Service.Types.Type.VolumeAccessibilityConstraints));
        response.Capabilities.Add(new PluginCapability
        {
            VolumeExpansion = new PluginCapability.Types.VolumeExpansion { Type = PluginCapability.Types.VolumeExpansion.Types.Type.Online },
        });
        return Task.FromResult(response);

        static PluginCapability Service(PluginCapability.Types.Service.Types.Type type) =>
            new() { Service = new PluginCapability.Types.Service { Type = type } };
    }

    /// <summary>Ready when slabd answers; not ready (no error: the plugin itself is healthy) while it does not.</summary>
    public override async Task<ProbeResponse> Probe(ProbeRequest request, ServerCallContext context)
    {
        try
        {
            await slabd.Identity.VersionAsync(new Api.V1.VersionRequest(), SlabdApi.Options(context, TimeSpan.FromSeconds(5))).ConfigureAwait(false);
            return new ProbeResponse { Ready = true };
        }
        catch (RpcException ex) when (ApiConnection.IsUnreachable(ex, out _) || ex.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            return new ProbeResponse { Ready = false };
        }
    }
}
