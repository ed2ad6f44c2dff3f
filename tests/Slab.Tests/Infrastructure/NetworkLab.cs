using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Tmds.Linux;
using Xunit;

namespace Slab.Tests.Infrastructure;

/// <summary>
/// A private network of Linux network namespaces for partition tests: N nodes on one switch, whose
/// links a test can cut and heal. Needs root and iproute2 (<see cref="UnavailableReason"/>; tests use
/// <see cref="NetworkLabFactAttribute"/> to skip otherwise).
/// </summary>
/// <remarks>
/// <para>Topology: namespace <c>PREFIX-sw</c> holds bridge <c>br0</c>; node <c>i</c> is namespace
/// <c>PREFIX-n{i}</c> with loopback up and <c>eth0</c> (a veth whose peer <c>p{i}</c> is a bridge
/// port) at <see cref="Address"/> = <c>10.X.Y.{i+1}/24</c>, X.Y derived from the prefix. Interfaces
/// live only inside the lab's namespaces, never in the host's, so labs cannot collide on names or
/// addresses; the host has no route into a lab.</para>
/// <para>Partitions drop packets silently, as a dead link or switch does (a connect times out; it is
/// not refused): every node has a sink, a veth pair <c>cut0</c>/<c>cut1</c> with ARP off, and a cut
/// from node a to node b is the route <c>ADDRESS(b)/32 dev cut0</c> in a's namespace, so a's packets
/// to b vanish in the sink (<see cref="SinkedPacketsAsync"/> counts them). <see cref="CutAsync"/>
/// installs it both ways; <see cref="IsolateAsync"/> cuts a node from every other node and is undone
/// separately by <see cref="RejoinAsync"/> (a pair cut and an isolation may overlap; a pair is
/// reachable when neither applies).</para>
/// <para>Processes: <see cref="ExecAsync"/> runs a command to completion in a node's namespace,
/// <see cref="StartProcess"/> starts a long-running one (e.g. slabd) there, through
/// <c>ip netns exec</c>; <see cref="CreateSocket"/> makes a socket of this process in a node's
/// namespace (bind, listen and connect then happen there).</para>
/// <para>Clean-up: <see cref="DisposeAsync"/> kills every process it started and any other process
/// left in the lab's namespaces, then deletes the namespaces (the bridge and veths go with them),
/// trying every step and throwing the collected failures at the end. A lab's owner (pid and start
/// time) is recorded in <c>/run/slab-netlab/PREFIX</c> before anything is created, so a later run
/// removes labs whose owner died (<see cref="RemoveAbandonedAsync"/>, called by
/// <see cref="CreateAsync"/>); <see cref="RemoveStaleAsync"/> removes one prefix's leftovers.</para>
/// <para>Threading: the cut/heal/isolate/rejoin methods are serialised internally and may be called
/// from any thread; the rest is thread-safe too.</para>
/// </remarks>
/// <example>
/// <code>
/// await using var lab = await NetworkLab.CreateAsync(3, NetworkLab.NewPrefix());
/// var node0 = lab.StartProcess(0, "dotnet", ["slabd.dll", "--listen-address", lab.Address(0).ToString()]);
/// await lab.CutAsync(0, 1);   // 0 and 1 no longer reach each other; 2 reaches both
/// await lab.HealAsync(0, 1);
/// </code>
/// </example>
public sealed partial class NetworkLab : IAsyncDisposable
{
    /// <summary>Most nodes in a lab (names stay within 15 characters; addresses within a /24).</summary>
    public const int MaxNodes = 99;

    /// <summary>Where lab owners are recorded (tmpfs: gone after a reboot, as namespaces are).</summary>
    private const string OwnerDirectory = "/run/slab-netlab";

    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(30);

    private readonly byte _subnetX;
    private readonly byte _subnetY;
    private readonly SemaphoreSlim _topologyLock = new(1, 1);
    private readonly HashSet<(int A, int B)> _cutPairs = [];
    private readonly HashSet<int> _isolated = [];
    private readonly HashSet<(int From, int To)> _sinkRoutes = [];
    private readonly Lock _processLock = new();
    private readonly List<Process> _processes = [];
    private readonly Dictionary<Process, StringBuilder> _output = [];
    private int _disposed;

    private NetworkLab(int nodeCount, string prefix)
    {
        NodeCount = nodeCount;
        Prefix = prefix;
        var hash = SHA256.HashData(Encoding.ASCII.GetBytes(prefix));
        // 10.100.0.0 - 10.199.255.0: away from the usual 10.0.x / 10.1.x and Docker's defaults.
        _subnetX = (byte)(100 + (hash[0] % 100));
        _subnetY = hash[1];
    }

    /// <summary>Nodes in the lab, numbered from 0.</summary>
    public int NodeCount { get; }

    /// <summary>The prefix of every namespace of the lab.</summary>
    public string Prefix { get; }

    /// <summary>The namespace holding the bridge.</summary>
    public string SwitchNamespace => $"{Prefix}-sw";

    /// <summary>Why labs cannot run here (not root, no <c>ip</c>), or null when they can.</summary>
    public static string? UnavailableReason()
    {
        if (LibC.geteuid() != 0)
        {
            return "network namespaces need root";
        }

        return FindOnPath("ip") is null ? "iproute2 (ip) is not installed: apt-get install iproute2" : null;
    }

    /// <summary>A fresh prefix: "slt" and five random characters (8 in all).</summary>
    public static string NewPrefix()
    {
        const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return "slt" + RandomNumberGenerator.GetString(Alphabet, 5);
    }

    /// <summary>
    /// Creates the switch and <paramref name="nodeCount"/> connected nodes, after removing leftovers
    /// of <paramref name="prefix"/> and labs whose owner died. On failure whatever was made is
    /// removed before the exception propagates.
    /// </summary>
    /// <param name="nodeCount">1 to <see cref="MaxNodes"/>.</param>
    /// <param name="prefix">1 to 10 characters of [a-z0-9], unique per lab (<see cref="NewPrefix"/>).</param>
    public static async Task<NetworkLab> CreateAsync(int nodeCount, string prefix)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(nodeCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(nodeCount, MaxNodes);
        ArgumentNullException.ThrowIfNull(prefix);
        if (!PrefixPattern().IsMatch(prefix))
        {
            throw new ArgumentException($"prefix '{prefix}' must be 1 to 10 characters of [a-z0-9]", nameof(prefix));
        }

        if (UnavailableReason() is { } reason)
        {
            throw new InvalidOperationException($"cannot build a network lab: {reason}");
        }

        await RemoveAbandonedAsync();
        await RemoveStaleAsync(prefix);
        var lab = new NetworkLab(nodeCount, prefix);
        try
        {
            await lab.BuildAsync();
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Removes the namespaces named <c>PREFIX-*</c> (killing processes still in them) and the owner
    /// record of <paramref name="prefix"/>. For leftovers of a crashed run; never call it for a live lab.
    /// </summary>
    public static async Task RemoveStaleAsync(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var failures = new List<Exception>();
        foreach (var name in await ListNamespacesAsync())
        {
            if (name.StartsWith(prefix + "-", StringComparison.Ordinal))
            {
                await DeleteNamespaceAsync(name, failures);
            }
        }

        DeleteOwnerRecord(prefix);
        ThrowIfAny(failures, $"removing leftovers of network lab {prefix}");
    }

    /// <summary>Removes every lab whose recorded owner process is gone (crashed or killed test runs).</summary>
    public static async Task RemoveAbandonedAsync()
    {
        if (!Directory.Exists(OwnerDirectory))
        {
            return;
        }

        foreach (var record in Directory.EnumerateFiles(OwnerDirectory))
        {
            var prefix = Path.GetFileName(record);
            string owner;
            try
            {
                owner = await File.ReadAllTextAsync(record);
            }
            catch (FileNotFoundException)
            {
                continue; // its owner just disposed it
            }

            if (PrefixPattern().IsMatch(prefix) && !IsAlive(owner))
            {
                await RemoveStaleAsync(prefix);
            }
        }
    }

    /// <summary>The namespace of node <paramref name="node"/>: <c>PREFIX-n{node}</c>.</summary>
    public string NamespaceName(int node)
    {
        CheckNode(node);
        return $"{Prefix}-n{node}";
    }

    /// <summary>The node's address on the switch (10.X.Y.{node+1}).</summary>
    public IPAddress Address(int node)
    {
        CheckNode(node);
        return new IPAddress(new byte[] { 10, _subnetX, _subnetY, (byte)(node + 1) });
    }

    /// <summary>Drops every packet between nodes <paramref name="a"/> and <paramref name="b"/>, both ways, silently.</summary>
    public Task CutAsync(int a, int b) => ChangeTopologyAsync(() => _cutPairs.Add(Pair(a, b)));

    /// <summary>Undoes <see cref="CutAsync"/> for the pair (an isolation of either node still applies).</summary>
    public Task HealAsync(int a, int b) => ChangeTopologyAsync(() => _cutPairs.Remove(Pair(a, b)));

    /// <summary>Cuts every node of <paramref name="side"/> from every node not in it.</summary>
    public Task PartitionAsync(params int[] side) => ChangeTopologyAsync(() =>
    {
        foreach (var inside in side)
        {
            CheckNode(inside);
            for (var other = 0; other < NodeCount; other++)
            {
                if (!side.Contains(other))
                {
                    _cutPairs.Add(Pair(inside, other));
                }
            }
        }
    });

    /// <summary>Heals every pair cut and rejoins every isolated node: the full mesh again.</summary>
    public Task HealAllAsync() => ChangeTopologyAsync(() =>
    {
        _cutPairs.Clear();
        _isolated.Clear();
    });

    /// <summary>Cuts node <paramref name="node"/> from every other node (its link stays up; packets vanish).</summary>
    public Task IsolateAsync(int node)
    {
        CheckNode(node);
        return ChangeTopologyAsync(() => _isolated.Add(node));
    }

    /// <summary>Undoes <see cref="IsolateAsync"/> (pair cuts involving the node still apply).</summary>
    public Task RejoinAsync(int node)
    {
        CheckNode(node);
        return ChangeTopologyAsync(() => _isolated.Remove(node));
    }

    /// <summary>Packets node <paramref name="node"/> has sent into its sink (to nodes it is cut from) so far.</summary>
    public async Task<long> SinkedPacketsAsync(int node)
    {
        var result = await ExecAsync(node, "cat", "/sys/class/net/cut1/statistics/rx_packets");
        Check(result, $"reading the sink counter of node {node}");
        return long.Parse(result.Stdout.Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// Runs <paramref name="fileName"/> in the node's namespace (<c>ip netns exec</c>) to completion
    /// (at most 5 minutes) and returns its exit code and output; a non-zero exit is not an exception.
    /// </summary>
    public Task<HostCommand.Result> ExecAsync(int node, string fileName, params string[] arguments)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        return HostCommand.RunAsync("ip", ["netns", "exec", NamespaceName(node), fileName, .. arguments]);
    }

    /// <summary>
    /// Starts <paramref name="fileName"/> in the node's namespace (<c>ip netns exec</c>, which execs
    /// it: the process is the program itself). Standard input stays open (write to it through
    /// <see cref="Process.StandardInput"/>); standard output and error are captured
    /// (<see cref="OutputOf"/>) and each line is also passed to <paramref name="onOutput"/>, which
    /// is registered before the start so no line is missed. Killed by <see cref="DisposeAsync"/>.
    /// </summary>
    public Process StartProcess(int node, string fileName, IEnumerable<string> arguments, Action<string>? onOutput = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(arguments);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var info = new ProcessStartInfo("ip")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        string[] command = ["netns", "exec", NamespaceName(node), fileName, .. arguments];
        foreach (var argument in command)
        {
            info.ArgumentList.Add(argument);
        }

        info.Environment["LC_ALL"] = "C";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        var process = new Process { StartInfo = info };
        var output = new StringBuilder();
        void OnLine(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is not { } line)
            {
                return;
            }

            lock (output)
            {
                output.AppendLine(line);
            }

            onOutput?.Invoke(line);
        }

        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        lock (_processLock)
        {
            // Registered under the lock that dispose takes, so a process is either killed by dispose or never started.
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            process.Start();
            _processes.Add(process);
            _output[process] = output;
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Everything a process from <see cref="StartProcess"/> wrote to stdout and stderr so far, line by line.</summary>
    public string OutputOf(Process process)
    {
        StringBuilder output;
        lock (_processLock)
        {
            output = _output[process];
        }

        lock (output)
        {
            return output.ToString();
        }
    }

    /// <summary>
    /// A socket of this process in node <paramref name="node"/>'s namespace: binding, listening and
    /// connecting on it happen in that namespace (a socket keeps the namespace it was made in). Made on
    /// a short-lived thread that joins the namespace, creates the socket and leaves, so no other thread
    /// of this process changes namespace. The caller owns the socket.
    /// </summary>
    public Socket CreateSocket(int node, AddressFamily family = AddressFamily.InterNetwork, SocketType type = SocketType.Stream, ProtocolType protocol = ProtocolType.Tcp)
    {
        var path = Path.Combine("/run/netns", NamespaceName(node));
        Socket? socket = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var home = File.OpenHandle("/proc/thread-self/ns/net");
                using var target = File.OpenHandle(path);
                SetNetworkNamespace(target, path);
                try
                {
                    socket = new Socket(family, type, protocol);
                }
                finally
                {
                    SetNetworkNamespace(home, "/proc/thread-self/ns/net");
                }
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        })
        {
            IsBackground = true,
            Name = $"netns {NamespaceName(node)}",
        };
        thread.Start();
        thread.Join();
        if (failure is not null)
        {
            socket?.Dispose();
            throw new InvalidOperationException($"cannot create a socket in namespace {NamespaceName(node)}", failure);
        }

        return socket!;
    }

    /// <summary>
    /// Kills the processes it started and any other left in its namespaces, deletes the namespaces
    /// (and so the bridge and every veth) and the owner record. Tries every step; throws an
    /// <see cref="AggregateException"/> of what failed. Idempotent.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        List<Process> processes;
        lock (_processLock)
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            processes = [.. _processes];
        }

        var failures = new List<Exception>();
        foreach (var process in processes)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                }

                using var timeout = new CancellationTokenSource(CommandTimeout);
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (Exception ex)
            {
                failures.Add(new InvalidOperationException($"stopping process {SafeId(process)} of network lab {Prefix}", ex));
            }
            finally
            {
                process.Dispose();
            }
        }

        var names = Enumerable.Range(0, NodeCount).Select(i => $"{Prefix}-n{i}").Append(SwitchNamespace).ToHashSet();
        try
        {
            foreach (var name in await ListNamespacesAsync())
            {
                if (names.Contains(name))
                {
                    await DeleteNamespaceAsync(name, failures);
                }
            }
        }
        catch (Exception ex)
        {
            failures.Add(ex);
        }

        try
        {
            DeleteOwnerRecord(Prefix);
        }
        catch (IOException ex)
        {
            failures.Add(ex);
        }

        _topologyLock.Dispose();
        ThrowIfAny(failures, $"disposing network lab {Prefix}");
    }

    /// <summary>Namespaces on this host (<c>ip netns list</c>), names only.</summary>
    public static async Task<IReadOnlyList<string>> ListNamespacesAsync()
    {
        var result = await HostCommand.RunAsync("ip", ["netns", "list"], CommandTimeout);
        Check(result, "ip netns list");
        return [.. result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(line => line.Split(' ')[0])];
    }

    private async Task BuildAsync()
    {
        Directory.CreateDirectory(OwnerDirectory);
        await File.WriteAllTextAsync(Path.Combine(OwnerDirectory, Prefix), OwnerOf(Environment.ProcessId));

        var sw = SwitchNamespace;
        await IpAsync("netns", "add", sw);
        await IpAsync("-n", sw, "link", "set", "lo", "up");
        await IpAsync("-n", sw, "link", "add", "br0", "type", "bridge");
        await IpAsync("-n", sw, "link", "set", "br0", "up");
        for (var node = 0; node < NodeCount; node++)
        {
            var ns = NamespaceName(node);
            var port = $"p{node}";
            await IpAsync("netns", "add", ns);
            await IpAsync("-n", ns, "link", "set", "lo", "up");
            await IpAsync("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw);
            await IpAsync("-n", sw, "link", "set", port, "master", "br0");
            await IpAsync("-n", sw, "link", "set", port, "up");
            await IpAsync("-n", ns, "addr", "add", $"{Address(node)}/24", "dev", "eth0");
            await IpAsync("-n", ns, "link", "set", "eth0", "up");

            // The sink: cut0 sends (without ARP) into cut1, which drops what is not its own.
            await IpAsync("-n", ns, "link", "add", "cut0", "type", "veth", "peer", "name", "cut1");
            await IpAsync("-n", ns, "link", "set", "cut0", "arp", "off");
            await IpAsync("-n", ns, "link", "set", "cut1", "up");
            await IpAsync("-n", ns, "link", "set", "cut0", "up");
        }
    }

    private async Task ChangeTopologyAsync(Action change)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        await _topologyLock.WaitAsync();
        try
        {
            change();
            for (var from = 0; from < NodeCount; from++)
            {
                for (var to = 0; to < NodeCount; to++)
                {
                    if (from == to)
                    {
                        continue;
                    }

                    var cut = _cutPairs.Contains(Pair(from, to)) || _isolated.Contains(from) || _isolated.Contains(to);
                    var route = $"{Address(to)}/32";
                    if (cut && !_sinkRoutes.Contains((from, to)))
                    {
                        await IpAsync("-n", NamespaceName(from), "route", "add", route, "dev", "cut0");
                        _sinkRoutes.Add((from, to));
                    }
                    else if (!cut && _sinkRoutes.Contains((from, to)))
                    {
                        await IpAsync("-n", NamespaceName(from), "route", "del", route, "dev", "cut0");
                        _sinkRoutes.Remove((from, to));
                    }
                }
            }
        }
        finally
        {
            _topologyLock.Release();
        }
    }

    private (int A, int B) Pair(int a, int b)
    {
        CheckNode(a);
        CheckNode(b);
        if (a == b)
        {
            throw new ArgumentException($"a node cannot be cut from itself ({a})");
        }

        return a < b ? (a, b) : (b, a);
    }

    private void CheckNode(int node)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(node);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(node, NodeCount);
    }

    private static async Task IpAsync(params string[] arguments)
        => Check(await HostCommand.RunAsync("ip", arguments, CommandTimeout), "ip " + HostCommand.Describe(arguments));

    private static void Check(HostCommand.Result result, string what)
    {
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"{what} failed: {result}");
        }
    }

    /// <summary>Kills what still runs in the namespace, then deletes it; failures are collected.</summary>
    private static async Task DeleteNamespaceAsync(string name, List<Exception> failures)
    {
        try
        {
            var pids = await HostCommand.RunAsync("ip", ["netns", "pids", name], CommandTimeout);
            foreach (var pid in pids.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                if (int.TryParse(pid, CultureInfo.InvariantCulture, out var id) && id != Environment.ProcessId)
                {
                    _ = LibC.kill(id, LibC.SIGKILL);
                }
            }

            Check(await HostCommand.RunAsync("ip", ["netns", "delete", name], CommandTimeout), $"ip netns delete {name}");
        }
        catch (Exception ex)
        {
            failures.Add(ex);
        }
    }

    private static void DeleteOwnerRecord(string prefix)
    {
        var record = Path.Combine(OwnerDirectory, prefix);
        if (File.Exists(record))
        {
            File.Delete(record);
        }
    }

    private static void SetNetworkNamespace(Microsoft.Win32.SafeHandles.SafeFileHandle handle, string path)
    {
        if (LibC.setns((int)handle.DangerousGetHandle(), LibC.CLONE_NEWNET) != 0)
        {
            throw new InvalidOperationException($"setns({path}) failed with errno {LibC.errno}");
        }
    }

    /// <summary>"PID STARTTIME" of a process (start time in clock ticks since boot, field 22 of /proc/PID/stat).</summary>
    private static string OwnerOf(int pid) => $"{pid} {StartTimeOf(pid)}";

    private static bool IsAlive(string owner)
    {
        var parts = owner.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return parts.Length == 2
            && int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid)
            && StartTimeOf(pid) is { } started
            && started == parts[1];
    }

    private static string? StartTimeOf(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (IOException)
        {
            return null;
        }

        // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return fields.Length > 19 ? fields[19] : null;
    }

    private static string? FindOnPath(string tool)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':'))
        {
            var path = Path.Combine(dir, tool);
            if (File.Exists(path))
            {
                return path;
            }
        }

        return null;
    }

    private static string SafeId(Process process)
    {
        try
        {
            return process.Id.ToString(CultureInfo.InvariantCulture);
        }
        catch (InvalidOperationException)
        {
            return "(not started)";
        }
    }

    private static void ThrowIfAny(List<Exception> failures, string what)
    {
        if (failures.Count > 0)
        {
            throw new AggregateException($"{what}: {failures.Count} step(s) failed", failures);
        }
    }

    [GeneratedRegex("^[a-z0-9]{1,10}$")]
    private static partial Regex PrefixPattern();
}

/// <summary>A fact that needs a <see cref="NetworkLab"/>: skipped, with the reason, where labs cannot run.</summary>
public sealed class NetworkLabFactAttribute : FactAttribute
{
    public NetworkLabFactAttribute()
    {
        if (NetworkLab.UnavailableReason() is { } reason)
        {
            Skip = reason;
        }
    }
}
