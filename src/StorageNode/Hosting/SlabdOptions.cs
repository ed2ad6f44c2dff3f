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
    /// Address the TCP listeners (gRPC API, NBD, metrics) bind to. Loopback by default: neither has TLS or
    /// authentication yet, so exposing them to a network is an explicit choice.
    /// </summary>
    public string ListenAddress { get; init; } = "127.0.0.1";

    /// <summary>gRPC API TCP port; 0 disables the TCP listener (the unix socket stays).</summary>
    public int ApiPort { get; init; } = 9501;

    /// <summary>NBD TCP port; 0 disables the TCP listener (the unix socket stays).</summary>
    public int NbdPort { get; init; } = 10809;

    /// <summary>
    /// HTTP port of <c>/metrics</c> (Prometheus text format) on <see cref="ListenAddress"/>; 0 = any
    /// free port (the one taken is logged). Default 9506; in cluster mode <c>--port-base P</c> makes it
    /// P+5 unless <c>--metrics-port</c> is given.
    /// </summary>
    public int MetricsPort { get; init; } = 9506;

    /// <summary>Serve <c>/metrics</c>; false (<c>--no-metrics</c>) opens no metrics port.</summary>
    public bool Metrics { get; init; } = true;

    public string? ApiSocket { get; init; }

    public string? NbdSocket { get; init; }

    public double OvercommitRatio { get; init; } = 4.0;

    public string LogLevel { get; init; } = "Information";

    /// <summary>Skip the pool benchmark (tests; the pool is then medium priority).</summary>
    public bool SkipPoolBenchmark { get; init; }

    public bool ShowHelp { get; init; }

    /// <summary>The cluster this node belongs to; null runs a single node without cluster services.</summary>
    public string? ClusterId { get; init; }

    /// <summary>The IP other nodes reach this node on; in cluster mode the TCP/UDP listeners bind it.</summary>
    public string? Advertise { get; init; }

    /// <summary>This node is a Raft voter (a member of the internal KVDB).</summary>
    public bool Kvdb { get; init; }

    /// <summary>Raft endpoints ("ip:port") of the KVDB voters: the founding voters, or where a joining node finds the cluster.</summary>
    public IReadOnlyList<System.Net.IPEndPoint> Peers { get; init; } = [];

    public string Zone { get; init; } = "";

    public string Rack { get; init; } = "";

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new SortedDictionary<string, string>(StringComparer.Ordinal);

    /// <summary>
    /// When set, the TCP/UDP ports of the design's table become P, P+1, ... in that order: gRPC API,
    /// REST (reserved), replication, Raft, gossip (UDP; TCP on the same number carries forwarded
    /// proposals), metrics, NBD. An explicit <c>--metrics-port</c> wins over P+5.
    /// </summary>
    public int? PortBase { get; init; }

    /// <summary>Replication data-plane TCP port (default 9503).</summary>
    public int ReplicationPort { get; init; } = 9503;

    /// <summary>Raft TCP port (default 9504).</summary>
    public int RaftPort { get; init; } = 9504;

    /// <summary>Gossip UDP port, and TCP port of the proposal-forwarding channel (default 9505).</summary>
    public int GossipPort { get; init; } = 9505;

    /// <summary>
    /// Serve Docker's volume plugin protocol on <see cref="DockerPluginSocketPath"/>: true
    /// (<c>--docker-plugin</c>, or a socket path given), false (<c>--no-docker-plugin</c>), null: on
    /// when Docker's plugin directory (<c>/run/docker/plugins</c>) exists when slabd starts.
    /// </summary>
    public bool? DockerPlugin { get; init; }

    public string? DockerPluginSocket { get; init; }

    /// <summary>
    /// <c>--keep-attachments</c>: attached volumes outlive slabd (a stop, a crash, an upgrade): their
    /// I/O waits up to <see cref="KeptAttachmentReconnectTimeout"/> for slabd to come back, and the
    /// next start adopts them with their mounts. Costs a relay process per attachment on the I/O path.
    /// </summary>
    public bool KeepAttachments { get; init; }

    /// <summary>
    /// <c>--attach-method</c>: <c>auto</c> (the kernel NBD driver when the host has it, else slabd's
    /// own FUSE file + loop), <c>kernel-nbd</c>, <c>fuse</c> (slabd's FUSE file + loop) or
    /// <c>nbdfuse</c> (nbdfuse + loop over the attach socket). <c>--keep-attachments</c> always uses
    /// nbdfuse + loop (with its relay).
    /// </summary>
    public string AttachMethod { get; init; } = "auto";

    /// <summary>The host layer's preference for <see cref="AttachMethod"/>.</summary>
    public Slab.Host.AttachMethodPreference AttachPreference => AttachMethod switch
    {
        "kernel-nbd" => Slab.Host.AttachMethodPreference.KernelNbd,
        "fuse" or "nbdfuse" => Slab.Host.AttachMethodPreference.NbdFuse,
        _ => Slab.Host.AttachMethodPreference.Auto,
    };

    /// <summary>Whether slabd serves attachments from its own FUSE server (unless they must outlive it).</summary>
    public bool OwnFuseServer => AttachMethod != "nbdfuse";

    /// <summary>How long a kept attachment's I/O waits for slabd before it fails with EIO.</summary>
    public static readonly TimeSpan KeptAttachmentReconnectTimeout = TimeSpan.FromSeconds(120);

    public string DockerPluginSocketPath => DockerPluginSocket ?? Api.Docker.DockerPluginOptions.DefaultSocketPath;

    /// <summary>Whether the Docker plugin runs, deciding the default now (see <see cref="DockerPlugin"/>).</summary>
    public bool DockerPluginEnabled => DockerPlugin ?? Directory.Exists(Api.Docker.DockerPluginOptions.DockerPluginDirectory);

    public bool Clustered => ClusterId is not null;

    /// <summary>The address other nodes use: <see cref="Advertise"/>, else the listen address.</summary>
    public string AdvertiseAddress => Advertise ?? ListenAddress;

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
          --listen-address ADDR   address of the TCP API, NBD and metrics listeners (default
                                  127.0.0.1; they have no TLS or authentication yet)
          --api-port PORT         gRPC API TCP port (default 9501; 0 = unix socket only)
          --nbd-port PORT         NBD TCP port (default 10809; 0 = unix socket only)
          --metrics-port PORT     HTTP port of /metrics, Prometheus text format (default 9506;
                                  0 = any free port, logged as "metrics on http://ADDR:PORT/metrics")
          --no-metrics            do not serve /metrics (no metrics port is opened)
          --api-socket PATH       gRPC unix socket (default RUN/api.sock)
          --nbd-socket PATH       NBD unix socket (default RUN/nbd.sock)
          --overcommit-ratio R    provisioned bytes may reach capacity x R (default 4)
          --skip-pool-benchmark   do not measure the pool's io priority when creating it
          --log-level LEVEL       Trace, Debug, Information, Warning, Error (default Information)
          --docker-plugin         serve Docker's volume plugin (driver "slab"); default: on when
                                  /run/docker/plugins exists
          --no-docker-plugin      do not serve Docker's volume plugin
          --docker-plugin-socket PATH
                                  the plugin's socket (default /run/docker/plugins/slab.sock;
                                  Docker names the driver after the file); implies --docker-plugin
          --attach-method M       how volumes become block devices: auto (default: the kernel
                                  NBD driver when /dev/nbd0 exists, else fuse), kernel-nbd,
                                  fuse (slabd's own FUSE file + a loop device), nbdfuse
                                  (nbdfuse + a loop device)
          --keep-attachments      attached volumes outlive slabd: a stop or crash leaves them
                                  attached and mounted, their I/O waits up to 120 s for slabd
                                  to return (then fails), and the next start adopts them. Each
                                  attachment runs a relay (nbdkit) on its I/O path; nbdfuse +
                                  loop attachments only. Under systemd use KillMode=process

        Cluster (without --cluster-id the node runs alone):
          --cluster-id ID         join or form this cluster (letters, digits, '-', '_', '.'; max 64)
          --advertise IP          the address other nodes reach this node on; the listeners bind
                                  it (default: --listen-address)
          --kvdb                  this node is a Raft voter (the internal KVDB). Voters whose Raft
                                  endpoint is in --peers found the cluster together, in any order;
                                  any other --kvdb node waits to be added
                                  (slabctl service kvdb add-member --node IP:RAFTPORT)
          --peers IP[:PORT],...   Raft endpoints of the KVDB voters (default port 9504); needed on
                                  every node but a lone voter
          --zone Z, --rack R      failure domains, used to spread replicas
          --label k=v,...         node labels volumes can require
          --port-base P           ports become P (API), P+1 (REST, reserved), P+2 (replication),
                                  P+3 (Raft), P+4 (gossip UDP, forwarding TCP), P+5 (metrics
                                  HTTP, unless --metrics-port), P+6 (NBD TCP), so nodes can share
                                  one address
          -h, --help              this text
        """;

    /// <summary>Parses the command line; throws <see cref="FormatException"/> with a message for people.</summary>
    public static SlabdOptions Parse(IReadOnlyList<string> args)
    {
        var options = new SlabdOptions();
        var drives = new List<string>();
        var dataDirGiven = false;
        var runDirGiven = false;
        string? peers = null;
        var metricsPortGiven = false;
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
                case "--metrics-port": options = options with { MetricsPort = Port(arg, Value()) }; metricsPortGiven = true; break;
                case "--no-metrics": options = options with { Metrics = false }; break;
                case "--api-socket": options = options with { ApiSocket = NonEmpty(arg, Value()) }; break;
                case "--nbd-socket": options = options with { NbdSocket = NonEmpty(arg, Value()) }; break;
                case "--overcommit-ratio": options = options with { OvercommitRatio = Ratio(arg, Value()) }; break;
                case "--skip-pool-benchmark": options = options with { SkipPoolBenchmark = true }; break;
                case "--log-level": options = options with { LogLevel = LogLevelName(Value()) }; break;
                case "-h" or "--help": options = options with { ShowHelp = true }; break;
                case "--cluster-id": options = options with { ClusterId = ClusterIdValue(Value()) }; break;
                case "--advertise": options = options with { Advertise = IpAddress(arg, Value()) }; break;
                case "--kvdb": options = options with { Kvdb = true }; break;
                case "--peers": peers = Value(); break;
                case "--zone": options = options with { Zone = DomainName(arg, Value()) }; break;
                case "--rack": options = options with { Rack = DomainName(arg, Value()) }; break;
                case "--label": options = options with { Labels = LabelList(Value()) }; break;
                case "--port-base": options = options with { PortBase = PortBaseValue(Value()) }; break;
                case "--docker-plugin": options = options with { DockerPlugin = DockerPluginValue(options, true) }; break;
                case "--no-docker-plugin": options = options with { DockerPlugin = DockerPluginValue(options, false) }; break;
                case "--docker-plugin-socket": options = options with { DockerPluginSocket = SocketPathValue(arg, Value()) }; break;
                case "--keep-attachments": options = options with { KeepAttachments = true }; break;
                case "--attach-method": options = options with { AttachMethod = AttachMethodValue(Value()) }; break;
                default:
                    throw new FormatException(arg.StartsWith('-') ? $"unknown option {arg}" : $"unexpected argument '{arg}'");
            }

            if (inline is not null && arg is "--dev" or "--wipe-drives" or "--skip-pool-benchmark" or "--kvdb" or "-h" or "--help" or "--docker-plugin" or "--no-docker-plugin" or "--no-metrics" or "--keep-attachments")
            {
                throw new FormatException($"{arg} takes no value");
            }
        }

        options = options with { Drives = drives };
        if (metricsPortGiven && !options.Metrics)
        {
            throw new FormatException("--metrics-port and --no-metrics contradict each other");
        }

        if (options.DockerPluginSocket is not null)
        {
            options = options with
            {
                DockerPlugin = options.DockerPlugin != false
                    ? true
                    : throw new FormatException("--docker-plugin-socket and --no-docker-plugin contradict each other"),
            };
        }

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

        return ApplyClusterOptions(
            options,
            peers,
            listenGiven: args.Any(a => a == "--listen-address" || a.StartsWith("--listen-address=", StringComparison.Ordinal)),
            metricsPortGiven);
    }

    private static SlabdOptions ApplyClusterOptions(SlabdOptions options, string? peers, bool listenGiven, bool metricsPortGiven)
    {
        if (options.ClusterId is null)
        {
            if (options.Kvdb || peers is not null || options.Advertise is not null || options.Zone.Length > 0 || options.Rack.Length > 0
                || options.Labels.Count > 0 || options.PortBase is not null)
            {
                throw new FormatException("--kvdb, --peers, --advertise, --zone, --rack, --label and --port-base need --cluster-id");
            }

            return options;
        }

        if (options.PortBase is { } p)
        {
            options = options with
            {
                ApiPort = p,
                ReplicationPort = p + 2,
                RaftPort = p + 3,
                GossipPort = p + 4,
                MetricsPort = metricsPortGiven ? options.MetricsPort : p + 5,
                NbdPort = p + 6,
            };
        }

        if (options.Advertise is not null && !listenGiven)
        {
            options = options with { ListenAddress = options.Advertise };
        }

        if (!System.Net.IPAddress.TryParse(options.AdvertiseAddress, out var advertise))
        {
            throw new FormatException($"--listen-address '{options.ListenAddress}' is not an IP address; cluster mode needs one (or give --advertise IP)");
        }

        if (options.ApiPort == 0)
        {
            throw new FormatException("cluster mode needs the TCP API (--api-port 0 is only for a single node): nodes forward requests to each other");
        }

        var list = new List<System.Net.IPEndPoint>();
        foreach (var entry in (peers ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var endPoint = System.Net.IPEndPoint.TryParse(entry, out var parsed) ? parsed : null;
            if (endPoint is null || !entry.Contains('.', StringComparison.Ordinal) && !entry.Contains('[', StringComparison.Ordinal) && !entry.Contains("::", StringComparison.Ordinal))
            {
                throw new FormatException($"--peers entry '{entry}' is not IP[:PORT] (e.g. 10.0.0.1:9504)");
            }

            if (endPoint.Port == 0)
            {
                endPoint.Port = 9504;
            }

            if (list.Contains(endPoint))
            {
                throw new FormatException($"--peers lists {endPoint} twice");
            }

            list.Add(endPoint);
        }

        if (peers is not null && list.Count == 0)
        {
            throw new FormatException("--peers needs at least one IP[:PORT]");
        }

        var self = new System.Net.IPEndPoint(advertise, options.RaftPort);
        if (list.Count == 0)
        {
            if (!options.Kvdb)
            {
                throw new FormatException("--peers is required: a node that is not a KVDB voter must know where the voters are");
            }

            list.Add(self); // a lone voter founds a cluster of one
        }

        if (options.Kvdb && list.Contains(self) && list.Count == 2)
        {
            throw new FormatException("--peers names 2 KVDB voters: two voters survive no failure; use 1 (development) or 3 or 5");
        }

        return options with { Peers = list };
    }

    private static bool DockerPluginValue(SlabdOptions options, bool on)
        => options.DockerPlugin is { } given && given != on
            ? throw new FormatException("--docker-plugin and --no-docker-plugin contradict each other")
            : on;

    private static string AttachMethodValue(string value)
        => value is "auto" or "kernel-nbd" or "fuse" or "nbdfuse"
            ? value
            : throw new FormatException($"--attach-method '{value}' must be auto, kernel-nbd, fuse or nbdfuse");

    private static string SocketPathValue(string flag, string value)
        => value.StartsWith('/') && value.Length < 108 && !value.EndsWith('/')
            ? value
            : throw new FormatException($"{flag} must be an absolute path of a socket file, shorter than 108 bytes (got '{value}')");

    private static string ClusterIdValue(string value)
        => value.Length is > 0 and <= 64 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? value
            : throw new FormatException($"--cluster-id '{value}' must be 1-64 letters, digits, '-', '_' or '.'");

    private static string IpAddress(string flag, string value)
        => System.Net.IPAddress.TryParse(value, out _) ? value : throw new FormatException($"{flag} '{value}' is not an IP address");

    private static string DomainName(string flag, string value)
        => value.Length is > 0 and <= 63 && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? value
            : throw new FormatException($"{flag} '{value}' must be 1-63 letters, digits, '-', '_' or '.'");

    private static int PortBaseValue(string value)
        => int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1024 and <= 65535 - 6
            ? port
            : throw new FormatException($"--port-base must be a port number 1024-65529 (got '{value}')");

    private static SortedDictionary<string, string> LabelList(string value)
    {
        var labels = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || eq == pair.Length - 1)
            {
                throw new FormatException($"--label entry '{pair}' is not key=value");
            }

            var key = DomainName("--label key", pair[..eq]);
            if (!labels.TryAdd(key, DomainName("--label value", pair[(eq + 1)..])))
            {
                throw new FormatException($"--label gives key '{key}' twice");
            }
        }

        return labels.Count > 0 ? labels : throw new FormatException("--label needs at least one key=value");
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
