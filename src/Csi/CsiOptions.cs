using System.Globalization;
using Slab.Cli.Connection;

namespace Slab.Csi;

/// <summary>Which CSI services the process serves.</summary>
public enum CsiMode
{
    /// <summary>Identity and Controller (the cluster-wide half: create, delete, snapshots, expand).</summary>
    Controller,

    /// <summary>Identity and Node (the per-host half: stage, publish, stats, expand the filesystem).</summary>
    Node,

    /// <summary>All of them (one process per host, e.g. outside Kubernetes).</summary>
    All,
}

/// <summary>
/// slab-csi's settings, from its command line. Immutable once parsed.
/// </summary>
/// <param name="Endpoint">Where the CO reaches slab-csi: a unix socket path (from <c>unix:///path</c>).</param>
/// <param name="Mode">Which services to serve.</param>
/// <param name="NodeId">The CO's name for this node (NodeGetInfo); null = slabd's node name.</param>
/// <param name="Slabd">slabd's API: the local socket (node mode) or any node's cluster API (controller).</param>
/// <param name="MaxVolumesPerNode">NodeGetInfo's max_volumes_per_node; 0 = no limit stated.</param>
internal sealed record CsiOptions(string Endpoint, CsiMode Mode, string? NodeId, Cli.Connection.Endpoint Slabd, int MaxVolumesPerNode)
{
    /// <summary>The driver name in Kubernetes (CSIDriver object, StorageClass provisioner).</summary>
    public const string DriverName = "csi.slab.dev";

    public const string DefaultEndpoint = "unix:///csi/csi.sock";

    public const string DefaultSlabd = "unix:///run/slab/api.sock";

    public const int DefaultMaxVolumesPerNode = 128;

    public bool ServesController => Mode is CsiMode.Controller or CsiMode.All;

    public bool ServesNode => Mode is CsiMode.Node or CsiMode.All;

    /// <summary>True when --help was given (nothing else is read then).</summary>
    public bool ShowHelp { get; init; }

    public static string Usage => """
        Usage: slab-csi [options]

        Slab's CSI v1.12 plugin (driver csi.slab.dev). It talks to slabd only through slabd's API.

          --endpoint unix:///PATH   where the CO connects (default unix:///csi/csi.sock)
          --mode controller|node|all  which CSI services to serve (default all)
          --node-id NAME            this node's id as the CO knows it (default: slabd's node name)
          --slabd ENDPOINT          slabd's API: unix:///run/slab/api.sock (default) or http://host:9501
          --max-volumes N           volumes this node may stage at once, reported to the CO (default 128)
          -h, --help                this text
        """;

    /// <summary>Parses the command line; a bad or missing value is a <see cref="FormatException"/> naming the flag.</summary>
    public static CsiOptions Parse(IReadOnlyList<string> args)
    {
        string endpoint = DefaultEndpoint;
        var mode = CsiMode.All;
        string? nodeId = null;
        var slabd = DefaultSlabd;
        var maxVolumes = DefaultMaxVolumesPerNode;
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
                    return inline;
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    throw new FormatException($"{arg} needs a value");
                return args[++i];
            }

            switch (arg)
            {
                case "-h" or "--help":
                    return new CsiOptions(endpoint, mode, nodeId, ParseSlabd(slabd), maxVolumes) { ShowHelp = true };
                case "--endpoint":
                    endpoint = Value();
                    break;
                case "--mode":
                    var m = Value();
                    mode = m.ToLowerInvariant() switch
                    {
                        "controller" => CsiMode.Controller,
                        "node" => CsiMode.Node,
                        "all" => CsiMode.All,
                        _ => throw new FormatException($"--mode {m}: use controller, node or all"),
                    };
                    break;
                case "--node-id":
                    nodeId = Value();
                    if (string.IsNullOrWhiteSpace(nodeId))
                        throw new FormatException("--node-id is empty");
                    break;
                case "--slabd":
                    slabd = Value();
                    break;
                case "--max-volumes":
                    var text = Value();
                    if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out maxVolumes))
                        throw new FormatException($"--max-volumes {text}: give a whole number (0 = no limit)");
                    break;
                default:
                    throw new FormatException($"unknown option {arg}");
            }
        }

        return new CsiOptions(SocketPathOf(endpoint), mode, nodeId, ParseSlabd(slabd), maxVolumes);
    }

    private static string SocketPathOf(string endpoint)
    {
        var path = endpoint.StartsWith("unix://", StringComparison.OrdinalIgnoreCase) ? endpoint["unix://".Length..]
            : endpoint.StartsWith("unix:", StringComparison.OrdinalIgnoreCase) ? endpoint["unix:".Length..]
            : endpoint;
        if (!path.StartsWith('/'))
            throw new FormatException($"--endpoint {endpoint}: give a unix socket as unix:///absolute/path (COs reach CSI plugins over unix sockets)");
        return path;
    }

    private static Cli.Connection.Endpoint ParseSlabd(string text) =>
        Cli.Connection.Endpoint.TryParse(text, out var endpoint, out var error) ? endpoint : throw new FormatException($"--slabd {text}: {error}");
}
