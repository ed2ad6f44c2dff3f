using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using DotNext.Net.Cluster;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.Membership;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.Extensions.Logging;

namespace Slab.Cluster.State;

/// <summary>
/// One Raft voter of the cluster state: hosts DotNext's <see cref="RaftCluster"/> over TCP with a
/// <see cref="WriteAheadLog"/> and the snapshotting <see cref="ClusterStateMachine"/>, a persisted
/// membership, and the forwarding channel that takes proposals from followers when this member leads.
/// </summary>
/// <remarks>
/// <para><b>Bootstrapping.</b> Every founding voter is started with the same full peer list. On the
/// first start of its data directory a voter seeds its persisted Raft configuration with exactly
/// that list (never with itself alone: DotNext's cold start is off), then waits for an election.
/// No member can win an election without votes from a majority of that same set, and each member
/// votes once per term (persisted), so at most one leader exists per term and the voters can never
/// form two clusters, whatever order they start in. From then on the committed configuration on disk
/// rules; the peer list is ignored. A new member (<see cref="ClusterStateNodeOptions.JoinExisting"/>)
/// starts with no configuration at all and stays passive until the leader adds it.</para>
/// <para><b>Identity.</b> The data directory records the member id and Raft endpoint it belongs to;
/// starting it under another id or endpoint is refused, because a member that forgot its vote or
/// log could elect a second leader.</para>
/// </remarks>
public sealed partial class ClusterStateNode : IClusterStateStore, IAsyncDisposable
{
    private const string MemberIdKey = "slab.member-id";
    private const string ProposalEndPointKey = "slab.proposal-endpoint";
    private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(50);

    private readonly ClusterStateNodeOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<EndPoint, ClusterPeer> _peers = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _leaderSignalLock = new();
    private TaskCompletionSource _leaderSignal = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ClusterStateMachine? _machine;
    private WriteAheadLog? _wal;
    private EndPointConfigurationStorage? _storage;
    private RaftCluster? _cluster;
    private ProposalChannel? _channel;
    private int _state; // 0 new, 1 started, 2 disposed

    public ClusterStateNode(ClusterStateNodeOptions options, ILoggerFactory loggerFactory, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<ClusterStateNode>();
        _time = timeProvider;
        foreach (var peer in options.Peers)
        {
            _peers[peer.RaftEndPoint] = peer;
        }
    }

    public string MemberId => _options.MemberId;

    /// <inheritdoc />
    public ClusterState Current => _machine?.Current ?? ClusterState.Empty;

    /// <summary>Log index of the last command this node applied.</summary>
    public long LastAppliedIndex => _machine?.LastAppliedIndex ?? 0;

    /// <summary>Raft commit index as this member knows it (the log's last committed entry); 0 before start. Any thread.</summary>
    public long CommitIndex => _wal?.LastCommittedEntryIndex ?? 0;

    /// <inheritdoc />
    public string? LeaderId => _cluster?.Leader is { } leader ? ResolveMemberId(leader.EndPoint) : null;

    /// <summary>True while this member is the leader and has committed an entry of its term.</summary>
    public bool IsLeader => _cluster is { } cluster && !cluster.LeadershipToken.IsCancellationRequested;

    /// <inheritdoc />
    public IReadOnlyList<ClusterMemberInfo> Members =>
        _cluster is not { } cluster
            ? []
            : cluster.Members
                .Select(m => new ClusterMemberInfo(ResolveMemberId(m.EndPoint), m.EndPoint, m.IsLeader, !m.IsRemote, m.Status == ClusterMemberStatus.Available))
                .OrderBy(m => m.MemberId, StringComparer.Ordinal)
                .ToList();

    /// <summary>Raised after this node applies each command, on the applier; handlers must be quick.</summary>
    public event EventHandler<ClusterStateChangedEventArgs>? StateChanged;

    /// <inheritdoc />
    public event EventHandler<ClusterState>? CurrentChanged;


    /// <inheritdoc />
    public bool HasQuorum => HasWorkingLeader();

    /// <summary>Prepares commands proposed with <see cref="ProposePreparedAsync"/> while this member leads; set before <see cref="StartAsync"/>.</summary>
    public ILeaderCommandPreparer? Preparer { get; set; }

    /// <inheritdoc />
    public event EventHandler<string?>? LeaderChanged;

    /// <summary>
    /// Opens the data directory (restoring the latest snapshot and replaying the WAL), starts the
    /// forwarding channel and the Raft member. Returns once the member serves; a leader is elected
    /// when a majority of voters run (<see cref="WaitForLeaderAsync"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The data directory belongs to another member, or this node was started before.</exception>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.CompareExchange(ref _state, 1, 0) != 0)
        {
            throw new InvalidOperationException("a ClusterStateNode starts once; create a new one to restart");
        }

        var data = _options.DataDirectory;
        Directory.CreateDirectory(data);
        CheckIdentity(data);

        _machine = new ClusterStateMachine(
            new DirectoryInfo(Path.Combine(data, "snapshots")), _options.SnapshotInterval, _loggerFactory.CreateLogger<ClusterStateMachine>());
        await _machine.RestoreAsync(cancellationToken).ConfigureAwait(false);
        _machine.Applied += OnApplied;

        // The WAL reads the restored snapshot's index in its constructor, so it comes after RestoreAsync.
        _wal = new WriteAheadLog(
            new WriteAheadLog.Options { Location = Path.Combine(data, "wal") }, // flushes every commit (always, in DotNext 6.12)
            _machine);

        _storage = new EndPointConfigurationStorage(Path.Combine(data, "members.bin"));
        await SeedConfigurationAsync(_storage, cancellationToken).ConfigureAwait(false);

        var configuration = new RaftCluster.TcpConfiguration(_options.RaftEndPoint)
        {
            LowerElectionTimeout = (int)_options.LowerElectionTimeout.TotalMilliseconds,
            UpperElectionTimeout = (int)_options.UpperElectionTimeout.TotalMilliseconds,
            RequestTimeout = _options.RaftRequestTimeout ?? _options.LowerElectionTimeout,
            ColdStart = false,
            ConfigurationStorage = _storage,
            LoggerFactory = _loggerFactory,
            IsLeaderLeaseEnabled = true,
        };
        configuration.Metadata[MemberIdKey] = _options.MemberId;
        configuration.Metadata[ProposalEndPointKey] = _options.ProposalEndPoint.ToString();

        _cluster = new RaftCluster(configuration) { AuditTrail = _wal };
        _cluster.LeaderChanged += OnLeaderChanged;

        _channel = new ProposalChannel(_options.ProposalEndPoint, _options.ProposeTimeout, HandleForwardedAsync, _loggerFactory.CreateLogger<ProposalChannel>());
        _channel.Start();
        await _cluster.StartAsync(cancellationToken).ConfigureAwait(false);
        Log.Started(_logger, _options.MemberId, _options.RaftEndPoint, _options.ProposalEndPoint, _machine.Current.Revision);
    }

    /// <summary>Waits until some leader is known; returns its member id.</summary>
    /// <exception cref="TimeoutException">No leader within <paramref name="timeout"/>.</exception>
    public async Task<string> WaitForLeaderAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var cluster = _cluster ?? throw Stopped();
        var leader = await cluster.WaitForLeaderAsync(timeout, cancellationToken).ConfigureAwait(false);
        return ResolveMemberId(leader.EndPoint);
    }

    /// <inheritdoc />
    public Task<CommandResult> ProposeAsync(ClusterCommand command, CancellationToken cancellationToken)
        => ProposeCoreAsync(command, ForwardRequest.Propose, cancellationToken);

    /// <inheritdoc />
    public Task<CommandResult> ProposePreparedAsync(ClusterCommand command, CancellationToken cancellationToken)
        => ProposeCoreAsync(command, ForwardRequest.ProposePrepared, cancellationToken);

    private async Task<CommandResult> ProposeCoreAsync(ClusterCommand command, ForwardRequest type, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        var machine = _machine;
        if (machine is null || Volatile.Read(ref _state) != 1)
        {
            throw Stopped();
        }

        if (command.Timestamp == default)
        {
            command = command with { Timestamp = _time.GetUtcNow() };
        }

        var proposal = new Proposal { Id = Guid.NewGuid(), Command = command };
        var bytes = ClusterStateCodec.EncodeProposal(proposal);
        using var overall = new CancellationTokenSource(_options.ProposeTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, overall.Token, _stopping.Token);
        var applied = machine.WaitForResult(proposal.Id);
        try
        {
            var (status, body) = await SendToLeaderAsync(type, bytes, linked.Token).ConfigureAwait(false);
            if (status == ForwardStatus.Refused)
            {
                throw new ClusterStateException(ClusterStateError.Refused, $"the leader refused the {command.GetType().Name}: {Encoding.UTF8.GetString(body)}");
            }

            if (status == ForwardStatus.Done)
            {
                // Committed and applied on the leader. Wait (briefly) until it is applied here too, so
                // Current includes it; if this node caught up through a snapshot instead, the leader's
                // result is the same deterministic result.
                var leaderResult = ClusterStateCodec.DecodeResult(body);
                if (leaderResult.Revision == 0)
                {
                    return leaderResult; // refused by the leader's preparation: nothing was replicated
                }

                try
                {
                    return WithRevision(await applied.WaitAsync(_options.UpperElectionTimeout * 2, _time, linked.Token).ConfigureAwait(false));
                }
                catch (TimeoutException)
                {
                    return leaderResult;
                }
            }

            // The leader took the proposal but could not confirm it (leadership lost, connection broke):
            // it commits only if the next leader keeps it, and then it is applied here too.
            if (_logger.IsEnabled(LogLevel.Warning))
            {
                Log.OutcomePending(_logger, proposal.Id, Encoding.UTF8.GetString(body));
            }

            return WithRevision(await WaitForResultWhileLedAsync(applied, linked.Token).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (overall.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new ClusterStateException(
                ClusterStateError.OutcomeUnknown,
                $"no result for the {command.GetType().Name} within {_options.ProposeTimeout.TotalSeconds:0.#} s; " +
                "it may or may not be applied: read the state, or retry (creates are idempotent per request id)")
            { MayHaveBeenApplied = true };
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw Stopped();
        }
        finally
        {
            machine.Forget(proposal.Id);
        }
    }

    /// <summary>
    /// A result applied on this member carries this member's revision (which includes it), so callers
    /// can ask other nodes to catch up to it.
    /// </summary>
    private CommandResult WithRevision(CommandResult result)
        => result.Revision > 0 || _machine is not { } machine ? result : result with { Revision = Math.Max(1, machine.Current.Revision) };

    /// <summary>
    /// Waits for a proposal the leader took without confirming. Gives up with NoQuorum (outcome
    /// unknown) once no working leader has been seen for the no-quorum timeout: nothing can commit then.
    /// </summary>
    private async Task<CommandResult> WaitForResultWhileLedAsync(Task<CommandResult> applied, CancellationToken cancellationToken)
    {
        var leaderless = (long?)null;
        while (true)
        {
            await Task.WhenAny(applied, Task.Delay(RetryPause, _time, cancellationToken)).ConfigureAwait(false);
            if (applied.IsCompleted)
            {
                return await applied.ConfigureAwait(false);
            }

            cancellationToken.ThrowIfCancellationRequested();
            if (HasWorkingLeader())
            {
                leaderless = null;
            }
            else if (leaderless is null)
            {
                leaderless = _time.GetTimestamp();
            }
            else if (_time.GetElapsedTime(leaderless.Value) >= _options.NoQuorumTimeout)
            {
                throw new ClusterStateException(
                    ClusterStateError.NoQuorum,
                    DescribeNoQuorum() + "; the leader had taken this change before it lost its majority, so it may still be applied " +
                    "if that leader's log survives: read the state once the cluster is back, or retry (creates are idempotent per request id)")
                { MayHaveBeenApplied = true };
            }
        }
    }

    private bool HasWorkingLeader() =>
        _cluster?.Leader is { } leader
        && (leader.IsRemote || (_cluster.TryGetLeaseToken(out var lease) && !lease.IsCancellationRequested));

    /// <summary>
    /// Adds a voter through the leader (forwarded when this member is not the leader). The new member
    /// must be running with <see cref="ClusterStateNodeOptions.JoinExisting"/>; the leader first
    /// brings its log up to date, then commits the new configuration. Use it after
    /// <see cref="RemoveVoterAsync"/> to replace a dead voter.
    /// </summary>
    /// <exception cref="ClusterStateException">NoQuorum, or MembershipChangeFailed when the leader could not add it.</exception>
    public async Task AddVoterAsync(ClusterPeer peer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var payload = Encoding.UTF8.GetBytes($"{peer.MemberId} {peer.RaftEndPoint} {peer.ProposalEndPoint}");
        await ChangeMembershipAsync(ForwardRequest.AddVoter, payload, $"add voter {peer.MemberId} ({peer.RaftEndPoint})", cancellationToken)
            .ConfigureAwait(false);
        _peers[peer.RaftEndPoint] = peer;
    }

    /// <summary>Removes a voter (e.g. a dead one) through the leader; the remaining voters form the new majority.</summary>
    /// <exception cref="ClusterStateException">NoQuorum, or MembershipChangeFailed when the leader could not remove it.</exception>
    public Task RemoveVoterAsync(IPEndPoint raftEndPoint, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(raftEndPoint);
        return ChangeMembershipAsync(
            ForwardRequest.RemoveVoter, Encoding.UTF8.GetBytes(raftEndPoint.ToString()), $"remove voter {raftEndPoint}", cancellationToken);
    }

    private async Task ChangeMembershipAsync(ForwardRequest type, byte[] payload, string what, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _state) != 1)
        {
            throw Stopped();
        }

        // Membership changes are idempotent at the leader (adding a member or removing a non-member
        // is done), so a change that failed mid-way (leadership lost, a concurrent change) is retried
        // through whoever leads next, until the no-quorum timeout.
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        var started = _time.GetTimestamp();
        while (true)
        {
            var (status, body) = await SendToLeaderAsync(type, payload, linked.Token).ConfigureAwait(false);
            if (status == ForwardStatus.Done)
            {
                break;
            }

            if (status == ForwardStatus.Refused || _time.GetElapsedTime(started) >= _options.NoQuorumTimeout)
            {
                throw new ClusterStateException(ClusterStateError.MembershipChangeFailed, $"could not {what}: {Encoding.UTF8.GetString(body)}");
            }

            Log.MembershipChangeRetry(_logger, what, Encoding.UTF8.GetString(body));
            await Task.Delay(RetryPause, _time, linked.Token).ConfigureAwait(false);
        }

        Log.MembershipChanged(_logger, what);
    }

    /// <summary>
    /// Delivers a request to whoever leads now: handled here when this member leads, else forwarded.
    /// Retries while no leader takes it (election, stale leader) and gives up with NoQuorum after
    /// <see cref="ClusterStateNodeOptions.NoQuorumTimeout"/>. A NotLeader answer means nothing was attempted.
    /// </summary>
    private async Task<(ForwardStatus Status, byte[] Body)> SendToLeaderAsync(ForwardRequest type, byte[] payload, CancellationToken cancellationToken)
    {
        var cluster = _cluster ?? throw Stopped();
        var started = _time.GetTimestamp();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var signal = LeaderSignal;
            if (cluster.Leader is { } leader)
            {
                if (!leader.IsRemote)
                {
                    var answer = await HandleAsLeaderAsync(type, payload, forwarded: false, cancellationToken).ConfigureAwait(false);
                    if (answer.Status != ForwardStatus.NotLeader)
                    {
                        return answer;
                    }
                }
                else if (await ResolveProposalEndPointAsync(leader, cancellationToken).ConfigureAwait(false) is { } target)
                {
                    try
                    {
                        var answer = await ProposalChannel
                            .SendAsync(target, type, payload, _options.LowerElectionTimeout, cancellationToken)
                            .ConfigureAwait(false);
                        if (answer.Status != ForwardStatus.NotLeader)
                        {
                            return answer;
                        }
                    }
                    catch (SocketException e)
                    {
                        Log.ForwardNotSent(_logger, target, e.SocketErrorCode); // nothing sent: safe to retry
                    }
                    catch (IOException e)
                    {
                        return (ForwardStatus.Failed, Encoding.UTF8.GetBytes($"connection to leader {target} broke: {e.Message}"));
                    }
                }
            }

            if (_time.GetElapsedTime(started) >= _options.NoQuorumTimeout)
            {
                throw new ClusterStateException(ClusterStateError.NoQuorum, DescribeNoQuorum());
            }

            await Task.WhenAny(signal, Task.Delay(RetryPause, _time, cancellationToken)).ConfigureAwait(false);
        }
    }

    private async Task<(ForwardStatus Status, byte[] Body)> HandleForwardedAsync(ForwardRequest type, byte[] payload, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        if (type == ForwardRequest.Watch)
        {
            return await HandleWatchAsync(payload, linked.Token).ConfigureAwait(false);
        }

        return await HandleAsLeaderAsync(type, payload, forwarded: true, linked.Token).ConfigureAwait(false);
    }

    /// <summary>Answers a client's watch once the revision differs from the one it knows, or when the wait ends.</summary>
    private async Task<(ForwardStatus Status, byte[] Body)> HandleWatchAsync(byte[] payload, CancellationToken cancellationToken)
    {
        var machine = _machine;
        if (machine is null || payload.Length != 12)
        {
            return (ForwardStatus.Refused, "malformed watch request"u8.ToArray());
        }

        var known = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(payload);
        var waitMs = Math.Clamp(System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(payload.AsSpan(8)), 0, 30_000);
        if (machine.Current.Revision == known && waitMs > 0)
        {
            var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            EventHandler<ClusterState> handler = (_, _) => changed.TrySetResult();
            CurrentChanged += handler;
            try
            {
                if (machine.Current.Revision == known)
                {
                    await Task.WhenAny(changed.Task, Task.Delay(TimeSpan.FromMilliseconds(waitMs), _time, cancellationToken)).ConfigureAwait(false);
                }
            }
            finally
            {
                CurrentChanged -= handler;
            }

            cancellationToken.ThrowIfCancellationRequested();
        }

        var current = machine.Current;
        var info = new WatchInfo
        {
            Leader = LeaderId,
            HasQuorum = HasWorkingLeader(),
            Revision = current.Revision,
            Members = Members.Select(m => new WatchMember(m.MemberId, m.RaftEndPoint.ToString() ?? "", m.IsLeader, m.IsAvailable || m.IsLocal)).ToList(),
        };
        var infoBytes = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(info, ClusterStateJsonContext.Default.WatchInfo);
        var state = current.Revision == known ? [] : ClusterStateCodec.EncodeState(current);
        var body = new byte[4 + infoBytes.Length + state.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(body, infoBytes.Length);
        infoBytes.CopyTo(body.AsSpan(4));
        state.CopyTo(body.AsSpan(4 + infoBytes.Length));
        return (ForwardStatus.Done, body);
    }

    /// <summary>Carries out a request if this member leads and sees a quorum; NotLeader (nothing attempted) otherwise.</summary>
    private async Task<(ForwardStatus Status, byte[] Body)> HandleAsLeaderAsync(
        ForwardRequest type, byte[] payload, bool forwarded, CancellationToken cancellationToken)
    {
        var cluster = _cluster;
        var machine = _machine;
        if (cluster is null || machine is null || Volatile.Read(ref _state) != 1)
        {
            return (ForwardStatus.NotLeader, "stopping"u8.ToArray());
        }

        // The lease is held only while a majority answered recently: a leader cut off from the
        // others says NotLeader here instead of appending entries it cannot commit.
        if (cluster.LeadershipToken.IsCancellationRequested || !cluster.TryGetLeaseToken(out var lease) || lease.IsCancellationRequested)
        {
            return (ForwardStatus.NotLeader, "not the leader, or no quorum"u8.ToArray());
        }

        try
        {
            switch (type)
            {
                case ForwardRequest.Propose or ForwardRequest.ProposePrepared:
                    Proposal proposal;
                    try
                    {
                        proposal = ClusterStateCodec.DecodeProposal(payload);
                    }
                    catch (ClusterStateFormatException e)
                    {
                        return (ForwardStatus.Refused, Encoding.UTF8.GetBytes(e.Message));
                    }

                    if (type == ForwardRequest.ProposePrepared)
                    {
                        if (Preparer is not { } preparer)
                        {
                            return (ForwardStatus.Refused, "this leader has no command preparer"u8.ToArray());
                        }

                        var preparation = preparer.Prepare(proposal.Command, machine.Current);
                        if (preparation.Rejection is { } refusal)
                        {
                            return (ForwardStatus.Done, ClusterStateCodec.EncodeResult(refusal with { Revision = 0 }));
                        }

                        proposal = proposal with { Command = preparation.Command! };
                        payload = ClusterStateCodec.EncodeProposal(proposal);
                    }

                    var applied = machine.WaitForResult(proposal.Id);
                    try
                    {
                        // Completes once committed and applied here (DotNext waits for apply).
                        await cluster.ReplicateAsync(payload, null, cancellationToken).ConfigureAwait(false);
                        var result = await applied.WaitAsync(cancellationToken).ConfigureAwait(false);
                        PropagateCommitIndex(cluster);
                        return (ForwardStatus.Done, ClusterStateCodec.EncodeResult(result with { Revision = Math.Max(1, machine.Current.Revision) }));
                    }
                    finally
                    {
                        if (forwarded)
                        {
                            machine.Forget(proposal.Id);
                        }
                    }

                case ForwardRequest.AddVoter:
                    var parts = Encoding.UTF8.GetString(payload).Split(' ');
                    if (parts.Length != 3 || !IPEndPoint.TryParse(parts[1], out var raft) || !IPEndPoint.TryParse(parts[2], out var proposals))
                    {
                        return (ForwardStatus.Refused, "malformed add-voter request"u8.ToArray());
                    }

                    _peers[raft] = new ClusterPeer(parts[0], raft, proposals);
                    if (cluster.Members.Any(m => raft.Equals(m.EndPoint)))
                    {
                        return (ForwardStatus.Done, []);
                    }

                    return await cluster.AddMemberAsync(raft, cancellationToken).ConfigureAwait(false)
                        ? (ForwardStatus.Done, [])
                        : (ForwardStatus.Failed, Encoding.UTF8.GetBytes($"member {raft} did not catch up or the configuration was not committed; is it running with JoinExisting?"));

                case ForwardRequest.RemoveVoter:
                    if (!IPEndPoint.TryParse(Encoding.UTF8.GetString(payload), out var removed))
                    {
                        return (ForwardStatus.Refused, "malformed remove-voter request"u8.ToArray());
                    }

                    if (!cluster.Members.Any(m => removed.Equals(m.EndPoint)))
                    {
                        return (ForwardStatus.Done, []);
                    }

                    return await cluster.RemoveMemberAsync(removed, cancellationToken).ConfigureAwait(false)
                        ? (ForwardStatus.Done, [])
                        : (ForwardStatus.Failed, Encoding.UTF8.GetBytes($"member {removed} is not a voter, or the configuration was not committed"));

                default:
                    return (ForwardStatus.Failed, "unknown request"u8.ToArray());
            }
        }
        catch (NotLeaderException e)
        {
            // Leadership ended mid-way: the entry may or may not survive under the next leader.
            return (ForwardStatus.Failed, Encoding.UTF8.GetBytes($"leadership lost: {e.Message}"));
        }
        catch (InvalidOperationException e)
        {
            // DotNext refuses concurrent membership changes this way.
            return (ForwardStatus.Failed, Encoding.UTF8.GetBytes(e.Message));
        }
    }

    /// <summary>
    /// Starts a replication round now instead of at the next heartbeat, so followers learn the new
    /// commit index and apply the entry at once: a caller on a follower, or the node that must make
    /// a new volume's replica, waits for that apply (a heartbeat is ~150 ms). Not awaited: the
    /// result does not depend on it.
    /// </summary>
    private void PropagateCommitIndex(RaftCluster cluster) => _ = PropagateCommitIndexAsync(cluster);

    private async Task PropagateCommitIndexAsync(RaftCluster cluster)
    {
        try
        {
            await cluster.ForceReplicationAsync(_stopping.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            // Leadership ended or the node stops: the next leader's heartbeat carries the commit index.
        }
    }

    private async ValueTask<IPEndPoint?> ResolveProposalEndPointAsync(RaftClusterMember member, CancellationToken cancellationToken)
    {
        if (_peers.TryGetValue(member.EndPoint, out var peer))
        {
            return peer.ProposalEndPoint;
        }

        try
        {
            var metadata = await member.GetMetadataAsync(refresh: false, cancellationToken).ConfigureAwait(false);
            if (metadata.TryGetValue(ProposalEndPointKey, out var text) && IPEndPoint.TryParse(text, out var endPoint)
                && metadata.TryGetValue(MemberIdKey, out var id) && member.EndPoint is IPEndPoint raft)
            {
                _peers[member.EndPoint] = new ClusterPeer(id, raft, endPoint);
                return endPoint;
            }
        }
        catch (MemberUnavailableException)
        {
            // try again on the next round
        }

        return null;
    }

    private string ResolveMemberId(EndPoint endPoint) =>
        _peers.TryGetValue(endPoint, out var peer) ? peer.MemberId : endPoint.ToString() ?? "?";

    private string DescribeNoQuorum()
    {
        var members = Members;
        var up = members.Count(m => m.IsAvailable || m.IsLocal);
        var majority = (members.Count / 2) + 1;
        var list = string.Join(", ", members.Select(m => $"{m.MemberId} {(m.IsLocal ? "(this node)" : m.IsAvailable ? "up" : "unreachable")}"));
        return $"no quorum: no leader accepted the change within {_options.NoQuorumTimeout.TotalSeconds:0.#} s; " +
            $"{up} of {members.Count} voters look reachable from {_options.MemberId} [{list}]; " +
            $"start or reconnect voters until {majority} of {members.Count} run";
    }

    private Task LeaderSignal
    {
        get
        {
            lock (_leaderSignalLock)
            {
                return _leaderSignal.Task;
            }
        }
    }

    private void OnLeaderChanged(RaftCluster<RaftClusterMember> cluster, RaftClusterMember? leader)
    {
        TaskCompletionSource fired;
        lock (_leaderSignalLock)
        {
            fired = _leaderSignal;
            _leaderSignal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        fired.TrySetResult();
        var id = leader is null ? null : ResolveMemberId(leader.EndPoint);
        Log.LeaderChanged(_logger, _options.MemberId, id ?? "none");
        try
        {
            LeaderChanged?.Invoke(this, id);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(_logger, e);
        }
    }

    private void OnApplied(object? sender, ClusterStateChangedEventArgs change)
    {
        StateChanged?.Invoke(this, change);
        CurrentChanged?.Invoke(this, change.Current);
    }

    private async Task SeedConfigurationAsync(EndPointConfigurationStorage storage, CancellationToken cancellationToken)
    {
        var current = await ((IClusterConfigurationStorage<EndPoint>)storage).LoadConfigurationAsync(cancellationToken).ConfigureAwait(false);
        if (current.Members.Count > 0)
        {
            var loaded = string.Join(", ", current.Members);
            Log.ConfigurationLoaded(_logger, loaded);
            return;
        }

        if (_options.JoinExisting)
        {
            Log.WaitingToBeAdded(_logger, _options.MemberId);
            return;
        }

        var seeded = current;
        foreach (var peer in _options.Peers)
        {
            seeded = seeded.Add(peer.RaftEndPoint);
        }

        await ((IClusterConfigurationStorage)storage).SaveConfigurationAsync(seeded, 0L, cancellationToken).ConfigureAwait(false);
        var members = string.Join(", ", seeded.Members);
        Log.ConfigurationSeeded(_logger, members);
    }

    private void CheckIdentity(string data)
    {
        var file = Path.Combine(data, "member.id");
        var identity = $"{_options.MemberId} {_options.RaftEndPoint}";
        if (File.Exists(file))
        {
            var recorded = File.ReadAllText(file).Trim();
            if (recorded != identity)
            {
                throw new InvalidOperationException(
                    $"data directory {data} belongs to member '{recorded}', not '{identity}'; a member's Raft log and votes must never move to another identity. " +
                    "Use the matching member id and endpoint, or an empty directory for a new member (and add it with AddVoterAsync)");
            }

            return;
        }

        Common.DurableFile.WriteAllBytes(file, Encoding.UTF8.GetBytes(identity + "\n"));
    }

    private ClusterStateException Stopped() =>
        new(ClusterStateError.Stopped, $"cluster state member {_options.MemberId} is not running");

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _state, 2) == 2)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _machine?.FailWaiters(Stopped());
        if (_channel is not null)
        {
            await _channel.DisposeAsync().ConfigureAwait(false);
        }

        if (_cluster is not null)
        {
            _cluster.LeaderChanged -= OnLeaderChanged;
            try
            {
                await _cluster.StopAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
            {
                Log.StopFailed(_logger, e.Message);
            }

            await _cluster.DisposeAsync().ConfigureAwait(false);
        }

        if (_wal is not null)
        {
            await _wal.DisposeAsync().ConfigureAwait(false);
        }

        if (_machine is not null)
        {
            _machine.Applied -= OnApplied;
            await _machine.DisposeAsync().ConfigureAwait(false);
        }

        _storage?.Dispose();
        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "Cluster state member {MemberId} started: Raft {RaftEndPoint}, proposals {ProposalEndPoint}, state revision {Revision}")]
        public static partial void Started(ILogger logger, string memberId, IPEndPoint raftEndPoint, IPEndPoint proposalEndPoint, long revision);

        [LoggerMessage(Level = LogLevel.Information, Message = "Raft configuration seeded with the founding voters: {Members}")]
        public static partial void ConfigurationSeeded(ILogger logger, string members);

        [LoggerMessage(Level = LogLevel.Information, Message = "Raft configuration loaded from disk: {Members}")]
        public static partial void ConfigurationLoaded(ILogger logger, string members);

        [LoggerMessage(Level = LogLevel.Information, Message = "Member {MemberId} has no configuration and waits for the leader to add it")]
        public static partial void WaitingToBeAdded(ILogger logger, string memberId);

        [LoggerMessage(Level = LogLevel.Information, Message = "Member {MemberId}: leader is now {Leader}")]
        public static partial void LeaderChanged(ILogger logger, string memberId, string leader);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Raft membership change ({What}) did not complete, retrying through the current leader: {Reason}")]
        public static partial void MembershipChangeRetry(ILogger logger, string what, string reason);

        [LoggerMessage(Level = LogLevel.Information, Message = "Raft membership change done: {What}")]
        public static partial void MembershipChanged(ILogger logger, string what);

        [LoggerMessage(Level = LogLevel.Debug, Message = "Could not reach leader at {Target} ({Error}); retrying")]
        public static partial void ForwardNotSent(ILogger logger, IPEndPoint target, SocketError error);

        [LoggerMessage(Level = LogLevel.Warning, Message = "Proposal {ProposalId} was taken by a leader but not confirmed ({Reason}); waiting to see whether it commits")]
        public static partial void OutcomePending(ILogger logger, Guid proposalId, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "A leader-change handler failed")]
        public static partial void HandlerFailed(ILogger logger, Exception exception);

        [LoggerMessage(Level = LogLevel.Debug, Message = "Stopping the Raft member: {Reason}")]
        public static partial void StopFailed(ILogger logger, string reason);
    }
}
