using System.Runtime.Versioning;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Slab.Host;

/// <summary>Chooses the attach method for this host.</summary>
[SupportedOSPlatform("linux")]
public static class HostAttachFactory
{
    /// <summary>
    /// The method to use: the preference when explicit, else the kernel driver when <c>/dev/nbd0</c>
    /// exists and nbd-client is installed, else nbdfuse + loop.
    /// </summary>
    public static (AttachMethod Method, string Reason) ChooseMethod(AttachMethodPreference preference) => preference switch
    {
        AttachMethodPreference.KernelNbd => (AttachMethod.KernelNbd, "configured"),
        AttachMethodPreference.NbdFuse => (AttachMethod.NbdFuseLoop, "configured"),
        _ when !File.Exists("/dev/nbd0") => (AttachMethod.NbdFuseLoop, "/dev/nbd0 does not exist (no nbd module)"),
        _ when HostTools.Find("nbd-client") is null => (AttachMethod.NbdFuseLoop, "nbd-client is not installed (Debian package nbd-client)"),
        _ => (AttachMethod.KernelNbd, "/dev/nbd0 exists and nbd-client is installed"),
    };

    /// <summary>Creates the attacher for <see cref="HostOptions.PreferredMethod"/>.</summary>
    public static IBlockDeviceAttacher Create(HostOptions options, ILoggerFactory? loggerFactory = null)
    {
        loggerFactory ??= NullLoggerFactory.Instance;
        var (method, reason) = ChooseMethod(options.PreferredMethod);
        HostLog.MethodChosen(loggerFactory.CreateLogger(typeof(HostAttachFactory)), method.ToWireName(), reason);
        return method == AttachMethod.KernelNbd
            ? new KernelNbdAttacher(options, loggerFactory.CreateLogger<KernelNbdAttacher>())
            : new NbdFuseLoopAttacher(options, loggerFactory.CreateLogger<NbdFuseLoopAttacher>());
    }
}

/// <summary>Registers the host attach layer.</summary>
[SupportedOSPlatform("linux")]
public static class HostAttachServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="HostOptions"/>, <see cref="IBlockDeviceAttacher"/> (method chosen by
    /// <see cref="HostAttachFactory"/>) and <see cref="IFilesystemManager"/> as singletons and, when
    /// <paramref name="recoverOnStart"/>, a hosted service that runs
    /// <see cref="IBlockDeviceAttacher.RecoverAsync"/> at start-up.
    /// </summary>
    /// <param name="attacher">An attacher already made with <see cref="HostAttachFactory.Create"/> (slabd
    /// makes it before the host to clean up after a crash); null to have one made here.</param>
    public static IServiceCollection AddHostAttach(this IServiceCollection services, HostOptions options, bool recoverOnStart = true, IBlockDeviceAttacher? attacher = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.AddSingleton(options);
        if (attacher is not null)
        {
            services.AddSingleton(attacher);
        }
        else
        {
            services.AddSingleton(provider => HostAttachFactory.Create(
                provider.GetRequiredService<HostOptions>(),
                provider.GetService<ILoggerFactory>()));
        }

        services.AddSingleton<IFilesystemManager>(provider => new FilesystemManager(provider.GetService<ILogger<FilesystemManager>>()));
        if (recoverOnStart)
        {
            services.AddHostedService<HostAttachRecoveryService>();
        }

        return services;
    }
}

/// <summary>Runs start-up recovery of attachments left by a crash before slabd serves requests.</summary>
[SupportedOSPlatform("linux")]
internal sealed class HostAttachRecoveryService(IBlockDeviceAttacher attacher) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => attacher.RecoverAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
