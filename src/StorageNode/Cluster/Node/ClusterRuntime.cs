using System.Collections.Immutable;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Slab.Cluster.Membership;
using Slab.Cluster.State;
using Slab.Common;
using Slab.Store;
using Slab.Volumes;

namespace Slab.Cluster.Node;

/// <summary>
/// This slabd's part in its cluster: the Raft state (a voter, or a client with a read copy), gossip
/// liveness, registration of the node, and the reconciler that keeps this node's replicas equal to
/// what the cluster state places here. Created and started by slabd in cluster mode only.
/// </summary>
/// <remarks>
/// Threading: thread-safe. Reconciliation runs on one background loop (and, for one volume, in
/// <see cref="SyncReplicaAsync"/>), serialized by one lock; state and liveness are read lock-free.
/// </remarks>
public sealed partial class ClusterRuntime : IAsyncDisposable
{
    private readonly ClusterNodeOptions _options;
    private readonly IVolumeStore _store;
    private readonly VolumeManager _volumes;
    private readonly ILoggerFactory _loggers;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private ClusterStateNode? _voter;
    private ClusterStateClient? _client;
    private GossipMembership? _gossip;
    private Task _registration = Task.CompletedTask;
    private Task _reconciliation = Task.CompletedTask;

    public ClusterRuntime(ClusterNodeOptions options, IVolumeStore store, VolumeManager volumes, ILoggerFactory loggers, TimeProvider time)
    {
        _options = options;
        _store = store;
        _volumes = volumes;
        _loggers = loggers;
        _logger = loggers.CreateLogger<ClusterRuntime>();
        _time = time;
        Replicas = new StoreReplicaResolver(this, volumes, store);
        ResyncThrottle = new CopyThrottle(time);
    }

    public ClusterNodeOptions Options => _options;

    /// <summary>The node's clock.</summary>
    public TimeProvider Time => _time;

    public string LocalNodeId => _options.NodeId;

    /// <summary>This node's store (replicas of the cluster's volumes).</summary>
    internal IVolumeStore Store => _store;

    /// <summary>The replicated cluster state (this node's read copy and its way to propose changes).</summary>
    public IClusterStateStore State => (IClusterStateStore?)_voter ?? _client ?? throw new InvalidOperationException("the cluster runtime is not started");

    /// <summary>The Raft member when this node is a voter; null on a non-voting node.</summary>
    public ClusterStateNode? Voter => _voter;

    /// <summary>Gossip liveness and node stats.</summary>
    public IClusterMembership Liveness => _gossip ?? throw new InvalidOperationException("the cluster runtime is not started");

    /// <summary>Serves this node's replicas to the replication server.</summary>
    public StoreReplicaResolver Replicas { get; }

    /// <summary>True once this node's registration was committed.</summary>
    public bool Registered { get; private set; }

    /// <summary>The state revision that includes this start's registration: a read copy at or past it has everything committed before this node started.</summary>
    private long _registeredRevision;

    /// <summary>Whether the read copy has caught up with the cluster as it was when this node started (it includes the node's registration).</summary>
    private bool CaughtUp(ClusterState state) => Registered && state.Revision >= Volatile.Read(ref _registeredRevision);

    /// <summary>
    /// Starts the Raft member or client and gossip, then registration and reconciliation in the
    /// background; returns without waiting for a quorum (the first voters wait for the others).
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _startedAt = _time.GetUtcNow();
        var self = _options.RaftEndPoint;
        if (_options.Kvdb)
        {
            var founding = _options.Peers.Contains(self);
            _voter = new ClusterStateNode(
                new ClusterStateNodeOptions
                {
                    MemberId = self.ToString(),
                    RaftEndPoint = self,
                    ProposalEndPoint = new System.Net.IPEndPoint(_options.Advertise, _options.GossipPort),
                    Peers = founding
                        ? [.. _options.Peers.Select(p => new ClusterPeer(p.ToString(), p, ClusterNodeOptions.ProposalEndPointOf(p)))]
                        : [],
                    DataDirectory = Path.Combine(_options.DataDirectory, "raft"),
                    JoinExisting = !founding,
                },
                _loggers,
                _time)
            { Preparer = new LeaderPreparer(this) };
            _voter.CurrentChanged += OnStateChanged;
            try
            {
                await _voter.StartAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (InvalidOperationException e)
            {
                throw new SlabException(SlabErrorCode.FailedPrecondition, $"cannot start the KVDB member: {e.Message}", e);
            }
        }
        else
        {
            _client = new ClusterStateClient(
                new ClusterStateClientOptions { Voters = [.. _options.Peers.Select(ClusterNodeOptions.ProposalEndPointOf)] }, _loggers, _time);
            _client.CurrentChanged += OnStateChanged;
            _client.Start();
        }

        _gossip = new GossipMembership(
            new GossipOptions
            {
                ClusterId = _options.ClusterId,
                NodeId = _options.NodeId,
                BindEndPoint = _options.GossipEndPoint,
                Seeds = [.. _options.Peers.Select(ClusterNodeOptions.GossipEndPointOf).Where(p => !p.Equals(_options.GossipEndPoint))],
            },
            LocalStats,
            _time,
            _loggers);
        _gossip.MemberChanged += OnMemberChanged; // a node back online: resync its replicas and copy snapshots from it now, not at the next periodic pass
        await _gossip.StartAsync(cancellationToken).ConfigureAwait(false);
        _registration = RegisterLoopAsync(_stopping.Token);
        _reconciliation = ReconcileLoopAsync(_stopping.Token);
        if (_volumes.HasSurvivors)
        {
            SignalReconcile(); // their I/O waits until they are adopted
        }

        var endPoints = NodeEndpoints.Of(_options);
        Log.Started(_logger, _options.ClusterId, _options.NodeName, _options.Kvdb ? "KVDB voter" : "non-voting member", endPoints);
    }

    /// <summary>True for this node, and for other nodes gossip hears from.</summary>
    public bool IsAlive(string nodeId) => nodeId == _options.NodeId || (_gossip?.IsAlive(nodeId) ?? false);

    /// <summary>What a node is, as people see it: maintenance/decommissioning (recorded) or online/offline (gossip).</summary>
    public string StatusOf(NodeInfo node) => node.Status switch
    {
        NodeStatus.Maintenance => "maintenance",
        NodeStatus.Decommissioning => "decommissioning",
        _ => IsAlive(node.Id) ? "online" : "offline",
    };

    /// <summary>The latest stats a node published over gossip (this node: now); null when unknown.</summary>
    public NodeStats? StatsOf(string nodeId) => nodeId == _options.NodeId ? LocalStats() : _gossip?.Find(nodeId)?.Stats;

    /// <summary>
    /// Proposes a command and turns every failure into a <see cref="SlabException"/> a person can act
    /// on: no quorum and unknown outcomes are Unavailable; rejections map to their codes.
    /// </summary>
    public async Task<State.CommandResult> ProposeOrThrowAsync(ClusterCommand command, bool prepared, CancellationToken cancellationToken)
    {
        State.CommandResult result;
        try
        {
            result = prepared
                ? await State.ProposePreparedAsync(command, cancellationToken).ConfigureAwait(false)
                : await State.ProposeAsync(command, cancellationToken).ConfigureAwait(false);
        }
        catch (ClusterStateException e)
        {
            // Refused: nothing was applied and a retry fails the same way (a node of another version?).
            throw new SlabException(e.Error == ClusterStateError.Refused ? SlabErrorCode.FailedPrecondition : SlabErrorCode.Unavailable, e.Message, e);
        }

        if (!result.IsSuccess)
        {
            throw new SlabException(ToErrorCode(result.Rejection), result.Message);
        }

        return result;
    }

    private static SlabErrorCode ToErrorCode(Rejection rejection) => rejection switch
    {
        Rejection.InvalidArgument => SlabErrorCode.InvalidArgument,
        Rejection.NodeNotFound or Rejection.VolumeNotFound or Rejection.SnapshotNotFound or Rejection.ReplicaNotFound => SlabErrorCode.NotFound,
        Rejection.AlreadyExists => SlabErrorCode.AlreadyExists,
        Rejection.PlacementViolation => SlabErrorCode.ResourceExhausted,
        _ => SlabErrorCode.FailedPrecondition,
    };

    private NodeStats LocalStats()
    {
        var pool = _store.GetPoolStatus();
        return new NodeStats
        {
            TotalBytes = pool.TotalBytes,
            UsedBytes = pool.UsedBytes,
            ProvisionedBytes = pool.ProvisionedBytes,
            Load = ReadLoadAverage(),
            VolumeCount = _store.ListVolumes().Count,
            AttachedCount = _volumes.AttachedCount,
        };
    }

    private static double ReadLoadAverage()
    {
        try
        {
            var text = File.ReadAllText("/proc/loadavg");
            var end = text.IndexOf(' ', StringComparison.Ordinal);
            return end > 0 && double.TryParse(text.AsSpan(0, end), NumberStyles.Float, CultureInfo.InvariantCulture, out var load) ? load : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private async Task RegisterLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var pool = _store.GetPoolStatus();
            var command = new RegisterNode
            {
                NodeId = _options.NodeId,
                Name = _options.NodeName,
                Addresses = NodeEndpoints.Of(_options).ToAddresses(),
                Zone = _options.Zone,
                Rack = _options.Rack,
                Labels = _options.Labels,
                IsKvdbVoter = _options.Kvdb,
                Pools =
                [
                    new PoolSummary
                    {
                        Id = pool.Id,
                        IoPriority = pool.IoPriority,
                        TotalBytes = pool.TotalBytes,
                        UsedBytes = pool.UsedBytes,
                        ProvisionedBytes = pool.ProvisionedBytes,
                    },
                ],
            };
            try
            {
                var result = await State.ProposeAsync(command, stop).ConfigureAwait(false);
                if (result.IsSuccess)
                {
                    Volatile.Write(ref _registeredRevision, result.Revision);
                    Registered = true;
                    Log.Registered(_logger, _options.NodeName, _options.NodeId, State.Current.Nodes.Count);
                    SignalReconcile();
                    return;
                }

                Log.RegistrationRefused(_logger, result.Message);
                return;
            }
            catch (ClusterStateException e)
            {
                Log.RegistrationWaiting(_logger, e.Message);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }

            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), _time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _registration.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await _reconciliation.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await StopSnapshotCopiesAsync().ConfigureAwait(false);
        Replicas.ReleaseAll();
        if (_gossip is not null)
        {
            await _gossip.DisposeAsync().ConfigureAwait(false);
        }

        if (_voter is not null)
        {
            await _voter.DisposeAsync().ConfigureAwait(false);
        }

        if (_client is not null)
        {
            await _client.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Cluster {ClusterId}: node {NodeName} runs as {Role} ({EndPoints})")]
        public static partial void Started(ILogger logger, string clusterId, string nodeName, string role, NodeEndpoints endPoints);

        [LoggerMessage(Level = LogLevel.Information, Message = "Node {NodeName} ({NodeId}) registered; the cluster has {Nodes} nodes")]
        public static partial void Registered(ILogger logger, string nodeName, string nodeId, int nodes);

        [LoggerMessage(Level = LogLevel.Error, Message = "The cluster refused this node's registration: {Reason}")]
        public static partial void RegistrationRefused(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Registration waits for the cluster: {Reason}")]
        public static partial void RegistrationWaiting(ILogger logger, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Reconciling replica of volume {Volume} failed: {Reason}")]
        public static partial void ReconcileFailed(ILogger logger, string volume, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Replica of volume {Volume} {Action} to match the cluster state")]
        public static partial void Reconciled(ILogger logger, string volume, string action);

        [LoggerMessage(Level = LogLevel.Information, Message = "Volume {Volume}: {Action}")]
        public static partial void VolumeReconciled(ILogger logger, string volume, string action);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume} on this node is not part of cluster {ClusterId} (made before this node joined); it is left alone and not served to the cluster")]
        public static partial void ForeignVolume(ILogger logger, string volume, string clusterId);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Volume {Volume} was taken over by node {Holder} (epoch {Epoch}) while attached here as {Device}: this device is fenced, its writes fail; detach it (slabctl host detach)")]
        public static partial void AttachmentTakenOver(ILogger logger, string volume, string device, string holder, long epoch);
    }
}
