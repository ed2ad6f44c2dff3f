using System.Globalization;

namespace Slab.Hosting;

/// <summary>slabd's command line, parsed and validated.</summary>
public sealed record SlabdOptions
{
    public const string DefaultDataDirectory = "/var/lib/slab";
    public const string DefaultRunDirectory = "/run/slab";
    public const long DevDriveBytes = 64L << 30;

    public string DataDirectory { get; init; } = DefaultDataDirectory;

    public string RunDirectory { get; init; } = DefaultRunDirectory;

    public IReadOnlyList<string> Drives { get; init; } = [];

    public string? NodeName { get; init; }

    /// <summary>Embedded default: a sparse 64 GiB drive file in the data directory when no drive is given.</summary>
    public bool Dev { get; init; }

    public bool WipeDrives { get; init; }

    /// <summary>
    /// Address the TCP listeners (gRPC API, NBD) bind to. Loopback by default: neither has TLS or
    /// authentication yet, so exposing them to a network is an explicit choice.
    /// </summary>
    public string ListenAddress { get; init; } = "127.0.0.1";

    /// <summary>gRPC API TCP port; 0 disables the TCP listener (the unix socket stays).</summary>
    public int ApiPort { get; init; } = 9501;

    /// <summary>NBD TCP port; 0 disables the TCP listener (the unix socket stays).</summary>
    public int NbdPort { get; init; } = 10809;

    public string? ApiSocket { get; init; }

    public string? NbdSocket { get; init; }

    public double OvercommitRatio { get; init; } = 4.0;

    public string LogLevel { get; init; } = "Information";

    /// <summary>Skip the pool benchmark (tests; the pool is then medium priority).</summary>
    public bool SkipPoolBenchmark { get; init; }

    public bool ShowHelp { get; init; }

    public string ApiSocketPath => ApiSocket ?? Path.Combine(RunDirectory, "api.sock");

    public string NbdSocketPath => NbdSocket ?? Path.Combine(RunDirectory, "nbd.sock");

    public string AttachSocketPath => Path.Combine(RunDirectory, "attach.sock");

    public string DevDrivePath => Path.Combine(DataDirectory, "dev-drive.img");

    public const string Usage = """
        Usage:
          slabd --data-dir DIR --run-dir DIR --drive PATH [--drive PATH ...] [options]
          slabd --dev [--data-dir DIR] [--run-dir DIR] [options]

        Pools this host's drives and serves thin volumes over NBD, driven by slabctl.

        Options:
          --data-dir DIR          node identity and dev drive (default /var/lib/slab)
          --run-dir DIR           sockets, drive mounts, attachments (default /run/slab)
          --drive PATH            a block device or a file standing in for one; repeatable
          --dev                   embedded default: a sparse 64 GiB drive file in the data dir
          --wipe-drives           erase drives that carry a filesystem or partition signature
          --node-name NAME        this node's name (default: the host name)
          --listen-address ADDR   address of the TCP API and NBD listeners (default 127.0.0.1;
                                  they have no TLS or authentication yet)
          --api-port PORT         gRPC API TCP port (default 9501; 0 = unix socket only)
          --nbd-port PORT         NBD TCP port (default 10809; 0 = unix socket only)
          --api-socket PATH       gRPC unix socket (default RUN/api.sock)
          --nbd-socket PATH       NBD unix socket (default RUN/nbd.sock)
          --overcommit-ratio R    provisioned bytes may reach capacity x R (default 4)
          --skip-pool-benchmark   do not measure the pool's io priority when creating it
          --log-level LEVEL       Trace, Debug, Information, Warning, Error (default Information)
          -h, --help              this text
        """;

    /// <summary>Parses the command line; throws <see cref="FormatException"/> with a message for people.</summary>
    public static SlabdOptions Parse(IReadOnlyList<string> args)
    {
        var options = new SlabdOptions();
        var drives = new List<string>();
        var dataDirGiven = false;
        var runDirGiven = false;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string? inline = null;
            var eq = arg.IndexOf('=', StringComparison.Ordinal);
            if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                inline = arg[(eq + 1)..];
                arg = arg[..eq];
            }

            string Value()
            {
                if (inline is not null)
                {
                    return inline;
                }

                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new FormatException($"{arg} needs a value");
                }

                return args[++i];
            }

            switch (arg)
            {
                case "--data-dir": options = options with { DataDirectory = NonEmpty(arg, Value()) }; dataDirGiven = true; break;
                case "--run-dir": options = options with { RunDirectory = NonEmpty(arg, Value()) }; runDirGiven = true; break;
                case "--drive": drives.Add(NonEmpty(arg, Value())); break;
                case "--node-name": options = options with { NodeName = NonEmpty(arg, Value()) }; break;
                case "--dev": options = options with { Dev = true }; break;
                case "--wipe-drives": options = options with { WipeDrives = true }; break;
                case "--listen-address": options = options with { ListenAddress = NonEmpty(arg, Value()) }; break;
                case "--api-port": options = options with { ApiPort = Port(arg, Value()) }; break;
                case "--nbd-port": options = options with { NbdPort = Port(arg, Value()) }; break;
                case "--api-socket": options = options with { ApiSocket = NonEmpty(arg, Value()) }; break;
                case "--nbd-socket": options = options with { NbdSocket = NonEmpty(arg, Value()) }; break;
                case "--overcommit-ratio": options = options with { OvercommitRatio = Ratio(arg, Value()) }; break;
                case "--skip-pool-benchmark": options = options with { SkipPoolBenchmark = true }; break;
                case "--log-level": options = options with { LogLevel = LogLevelName(Value()) }; break;
                case "-h" or "--help": options = options with { ShowHelp = true }; break;
                default:
                    throw new FormatException(arg.StartsWith('-') ? $"unknown option {arg}" : $"unexpected argument '{arg}'");
            }

            if (inline is not null && arg is "--dev" or "--wipe-drives" or "--skip-pool-benchmark" or "-h" or "--help")
            {
                throw new FormatException($"{arg} takes no value");
            }
        }

        options = options with { Drives = drives };
        if (options.ShowHelp)
        {
            return options;
        }

        if (!options.Dev)
        {
            if (drives.Count == 0)
            {
                throw new FormatException("no drives given: pass --drive PATH (repeatable), or --dev for the embedded default");
            }

            if (!dataDirGiven || !runDirGiven)
            {
                throw new FormatException("--data-dir and --run-dir are required with --drive (or use --dev)");
            }
        }

        if (options.Dev && drives.Count == 0)
        {
            options = options with { Drives = [options.DevDrivePath] };
        }

        return options;
    }

    private static string NonEmpty(string flag, string value)
        => string.IsNullOrWhiteSpace(value) ? throw new FormatException($"{flag} needs a non-empty value") : value;

    private static int Port(string flag, string value)
        => int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 0 and <= 65535
            ? port
            : throw new FormatException($"{flag} must be a port number 0-65535 (got '{value}')");

    private static double Ratio(string flag, string value)
        => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var ratio) && ratio >= 1 && ratio <= 100
            ? ratio
            : throw new FormatException($"{flag} must be a number from 1 to 100 (got '{value}')");

    private static string LogLevelName(string value)
        => Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(value, ignoreCase: true, out var level)
            ? level.ToString()
            : throw new FormatException($"--log-level must be Trace, Debug, Information, Warning or Error (got '{value}')");
}
