using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Slab.Common;

namespace Slab.Cluster.Membership;

/// <summary>
/// Heartbeat gossip over UDP: every <see cref="GossipOptions.Interval"/> this node raises its
/// heartbeat and sends one datagram (its own entry plus a rotating window of the live nodes it
/// knows) to <see cref="GossipOptions.Fanout"/> random live peers and to one probe target (a seed
/// not yet heard from, or an offline node, in turn, so partitions heal). A node whose heartbeat has
/// not risen for <see cref="GossipOptions.OfflineAfter"/> is offline.
/// </summary>
/// <remarks>
/// Threading: thread-safe. One receive loop merges datagrams; heartbeats run on a
/// <see cref="TimeProvider"/> timer and never overlap; the member table is guarded by one lock, held
/// only for table work (never across I/O). Memory is bounded: at most <see cref="MaxMembers"/>
/// members, one send and one receive buffer. Malformed, corrupted or foreign datagrams are dropped
/// and counted in <see cref="DroppedDatagrams"/>; they never fail the node.
/// </remarks>
public sealed partial class GossipMembership : IClusterMembership, IAsyncDisposable
{
    /// <summary>Most nodes the view holds; entries for further nodes are ignored.</summary>
    public const int MaxMembers = 16_384;

    private readonly GossipOptions _options;
    private readonly Func<NodeStats> _localStats;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly byte[] _clusterIdUtf8;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, MemberRecord> _members = new(StringComparer.Ordinal);
    private readonly Dictionary<string, MemberRecord>.AlternateLookup<ReadOnlySpan<char>> _membersByName;
    private readonly List<IPEndPoint> _seeds = [];
    private readonly List<MemberRecord> _live = [];
    private readonly List<IPEndPoint> _probes = [];
    private readonly HashSet<IPEndPoint> _probeSet = []; // _probes' members, for O(1) duplicate checks
    private readonly List<IPEndPoint> _targets = [];
    private readonly byte[] _sendBuffer;
    private readonly long _generation;
    private readonly CancellationTokenSource _stopping = new();
    private Socket? _socket;
    private ITimer? _timer;
    private Task _receiving = Task.CompletedTask;
    private IPEndPoint? _advertise;
    private NodeStats _lastLocalStats;
    private long _heartbeat;
    private long _dropped;
    private long _received;
    private int _ticking;
    private int _relayCursor;
    private int _probeCursor;
    private long _lastForeignWarning = long.MinValue;

    /// <summary>Creates the membership; nothing is bound or sent before <see cref="StartAsync"/>.</summary>
    /// <param name="options">Settings; validated here.</param>
    /// <param name="localStats">This node's stats, called once per heartbeat on the timer thread; must be quick and must not throw.</param>
    /// <param name="time">Clock and timers.</param>
    /// <param name="loggers">Logging.</param>
    public GossipMembership(GossipOptions options, Func<NodeStats> localStats, TimeProvider time, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _localStats = localStats;
        _time = time;
        _logger = loggers.CreateLogger<GossipMembership>();
        _clusterIdUtf8 = Encoding.UTF8.GetBytes(options.ClusterId);
        _membersByName = _members.GetAlternateLookup<ReadOnlySpan<char>>();
        _sendBuffer = new byte[options.MaxDatagramBytes];
        _generation = time.GetUtcNow().ToUnixTimeMilliseconds();
        AddSeeds(options.Seeds);
    }

    /// <summary>The bound UDP endpoint (its port is the real one when the options asked for port 0).</summary>
    public IPEndPoint LocalEndPoint => (IPEndPoint?)_socket?.LocalEndPoint ?? throw new InvalidOperationException("gossip is not started");

    /// <summary>Datagrams dropped as malformed, corrupted, of another version or of another cluster.</summary>
    public long DroppedDatagrams => Interlocked.Read(ref _dropped);

    /// <summary>Datagrams merged into the view.</summary>
    public long ReceivedDatagrams => Interlocked.Read(ref _received);

    /// <summary>Raised after each datagram is merged or dropped (tests wait on it instead of sleeping).</summary>
    internal event Action? DatagramProcessed;

    /// <inheritdoc/>
    public event EventHandler<MemberView>? MemberChanged;

    /// <summary>Binds the UDP socket and starts the receive loop and the heartbeat timer.</summary>
    /// <exception cref="SlabException">FailedPrecondition: the endpoint cannot be bound (in use, not a local address).</exception>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var socket = new Socket(_options.BindEndPoint.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(_options.BindEndPoint);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"cannot bind the gossip endpoint udp/{_options.BindEndPoint}: {e.SocketErrorCode}", e);
        }

        _socket = socket;
        _advertise = _options.AdvertiseEndPoint ?? (IPEndPoint)socket.LocalEndPoint!;
        _lastLocalStats = _localStats();
        _receiving = ReceiveLoopAsync(socket, _stopping.Token);
        _timer = _time.CreateTimer(static s => ((GossipMembership)s!).Tick(), this, TimeSpan.Zero, _options.Interval);
        Log.Started(_logger, _advertise, _seeds.Count);
        return Task.CompletedTask;
    }

    /// <summary>Adds endpoints to probe until they answer; this node's own endpoint is ignored.</summary>
    private void AddSeeds(IEnumerable<IPEndPoint> seeds)
    {
        lock (_lock)
        {
            foreach (var seed in seeds)
            {
                if (!seed.Equals(_options.BindEndPoint) && !seed.Equals(_options.AdvertiseEndPoint) && !_seeds.Contains(seed))
                {
                    _seeds.Add(seed);
                }
            }
        }
    }

    /// <inheritdoc/>
    public IReadOnlyList<MemberView> Members
    {
        get
        {
            var now = _time.GetTimestamp();
            lock (_lock)
            {
                var views = new List<MemberView>(_members.Count + 1) { LocalView() };
                foreach (var record in _members.Values)
                {
                    views.Add(record.ToView(IsAliveAt(record, now)));
                }

                return views;
            }
        }
    }

    /// <inheritdoc/>
    public MemberView? Find(string nodeId)
    {
        if (nodeId == _options.NodeId)
        {
            return LocalView();
        }

        var now = _time.GetTimestamp();
        lock (_lock)
        {
            return _members.TryGetValue(nodeId, out var record) ? record.ToView(IsAliveAt(record, now)) : null;
        }
    }

    /// <inheritdoc/>
    public bool IsAlive(string nodeId)
    {
        if (nodeId == _options.NodeId)
        {
            return true;
        }

        var now = _time.GetTimestamp();
        lock (_lock)
        {
            return _members.TryGetValue(nodeId, out var record) && IsAliveAt(record, now);
        }
    }

    private bool IsAliveAt(MemberRecord record, long now) => _time.GetElapsedTime(record.LastHeardTimestamp, now) < _options.OfflineAfter;

    private MemberView LocalView()
        => new(_options.NodeId, _advertise ?? _options.BindEndPoint, IsAlive: true, Interlocked.Read(ref _heartbeat), _time.GetUtcNow(), _lastLocalStats, IsLocal: true);

    /// <summary>Stops sending and receiving; the view stays readable (everyone else becomes offline as time passes).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_timer is not null)
        {
            await _timer.DisposeAsync().ConfigureAwait(false);
        }

        _socket?.Dispose();
        await _receiving.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }

    private void RaiseChanges(List<MemberView>? changes)
    {
        if (changes is null)
        {
            return;
        }

        foreach (var view in changes)
        {
            if (view.IsAlive)
            {
                Log.NodeOnline(_logger, view.NodeId, view.GossipEndPoint);
            }
            else
            {
                Log.NodeOffline(_logger, view.NodeId, view.GossipEndPoint, _options.OfflineAfter.TotalSeconds);
            }

            try
            {
                MemberChanged?.Invoke(this, view);
            }
            catch (Exception e)
            {
                Log.HandlerFailed(_logger, e);
            }
        }
    }

    /// <summary>What this node knows of one other node.</summary>
    private sealed class MemberRecord(string nodeId, IPEndPoint endPoint)
    {
        public string NodeId { get; } = nodeId;

        public IPEndPoint EndPoint { get; set; } = endPoint;

        public long Generation { get; set; }

        public long Heartbeat { get; set; }

        public DateTimeOffset LastHeard { get; set; }

        public long LastHeardTimestamp { get; set; }

        public NodeStats Stats { get; set; }

        /// <summary>The liveness last announced through <see cref="MemberChanged"/>.</summary>
        public bool ReportedAlive { get; set; }

        public MemberView ToView(bool alive) => new(NodeId, EndPoint, alive, Heartbeat, LastHeard, Stats, IsLocal: false);
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Gossip on udp/{EndPoint}, {Seeds} seeds")]
        public static partial void Started(ILogger logger, IPEndPoint endPoint, int seeds);

        [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} is online (gossip {EndPoint})")]
        public static partial void NodeOnline(ILogger logger, string nodeId, IPEndPoint endPoint);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Node {NodeId} is offline: no heartbeat from gossip {EndPoint} for {Seconds} s")]
        public static partial void NodeOffline(ILogger logger, string nodeId, IPEndPoint endPoint, double seconds);

        [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeId} forgotten by gossip after {Hours} h of silence")]
        public static partial void NodeForgotten(ILogger logger, string nodeId, double hours);

        [LoggerMessage(Level = LogLevel.Debug, Message = "Gossip datagram from {From} dropped: {Reason}")]
        public static partial void Dropped(ILogger logger, EndPoint from, GossipDecodeError reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Gossip from {From} belongs to another cluster; dropped (check --cluster-id on that node)")]
        public static partial void ForeignCluster(ILogger logger, EndPoint from);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Another process gossips as this node ({NodeId}) from {From}; two slabd share one node id")]
        public static partial void DuplicateNodeId(ILogger logger, string nodeId, EndPoint from);

        [LoggerMessage(Level = LogLevel.Debug, Message = "Gossip send to {To} failed: {Error}")]
        public static partial void SendFailed(ILogger logger, IPEndPoint to, SocketError error);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Gossip receive failed: {Error}")]
        public static partial void ReceiveFailed(ILogger logger, SocketError error);

        [LoggerMessage(Level = LogLevel.Error, Message = "A membership change handler failed")]
        public static partial void HandlerFailed(ILogger logger, Exception exception);
    }
}
