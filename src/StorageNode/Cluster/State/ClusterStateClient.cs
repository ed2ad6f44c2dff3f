using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Slab.Cluster.State;

/// <summary>How a <see cref="ClusterStateClient"/> reaches the voters.</summary>
public sealed record ClusterStateClientOptions
{
    /// <summary>Forwarding-channel endpoints of the voters (any order; the leader is found by trying).</summary>
    public required IReadOnlyList<IPEndPoint> Voters { get; init; }

    /// <summary>How long a proposal looks for a leader that accepts it before failing with NoQuorum.</summary>
    public TimeSpan NoQuorumTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Upper bound of one forwarded request, from connect to answer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a voter holds a watch open when nothing changes.</summary>
    public TimeSpan WatchWait { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The read copy counts as current (for <see cref="ClusterStateClient.HasQuorum"/>) this long after the last answered watch.</summary>
    public TimeSpan StaleAfter { get; init; } = TimeSpan.FromSeconds(6);
}

/// <summary>
/// The cluster state on a node that is not a Raft voter: proposals are forwarded to the leader over
/// the voters' forwarding channel (each voter answers NotLeader until the leader is reached), and a
/// read copy is kept current by long-polling a voter (<see cref="ForwardRequest.Watch"/>).
/// </summary>
/// <remarks>Thread-safe. <see cref="Current"/> is an immutable state swapped atomically.</remarks>
public sealed partial class ClusterStateClient : IClusterStateStore, IAsyncDisposable
{
    private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(100);

    private readonly ClusterStateClientOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private ClusterState _current = ClusterState.Empty;
    private WatchInfo _info = new();
    private long _lastAnswer;
    private int _preferred;
    private TaskCompletionSource _refreshed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _watchLoop = Task.CompletedTask;

    public ClusterStateClient(ClusterStateClientOptions options, ILoggerFactory loggers, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Voters.Count == 0)
        {
            throw new ArgumentException("a cluster state client needs at least one voter endpoint", nameof(options));
        }

        _options = options;
        _time = time;
        _logger = loggers.CreateLogger<ClusterStateClient>();
    }

    /// <inheritdoc />
    public ClusterState Current => Volatile.Read(ref _current);

    /// <inheritdoc />
    public string? LeaderId => Fresh ? _info.Leader : null;

    /// <inheritdoc />
    public IReadOnlyList<ClusterMemberInfo> Members =>
        _info.Members
            .Select(m => new ClusterMemberInfo(m.MemberId, IPEndPoint.TryParse(m.RaftEndPoint, out var ep) ? ep : new IPEndPoint(IPAddress.None, 0), m.IsLeader, false, Fresh && m.IsAvailable))
            .ToList();


    /// <inheritdoc />
    public bool HasQuorum => Fresh && _info.HasQuorum;

    private bool Fresh
    {
        get
        {
            var last = Interlocked.Read(ref _lastAnswer);
            return last != 0 && _time.GetElapsedTime(last) < _options.StaleAfter;
        }
    }

    /// <inheritdoc />
    public event EventHandler<ClusterState>? CurrentChanged;

    /// <inheritdoc />
    public event EventHandler<string?>? LeaderChanged;

    /// <summary>Starts keeping the read copy current. Returns at once; the first copy arrives when a voter answers.</summary>
    public void Start() => _watchLoop = WatchLoopAsync(_stopping.Token);

    /// <inheritdoc />
    public Task<CommandResult> ProposeAsync(ClusterCommand command, CancellationToken cancellationToken)
        => ProposeCoreAsync(command, ForwardRequest.Propose, cancellationToken);

    /// <inheritdoc />
    public Task<CommandResult> ProposePreparedAsync(ClusterCommand command, CancellationToken cancellationToken)
        => ProposeCoreAsync(command, ForwardRequest.ProposePrepared, cancellationToken);

    private async Task<CommandResult> ProposeCoreAsync(ClusterCommand command, ForwardRequest type, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (_stopping.IsCancellationRequested)
        {
            throw new ClusterStateException(ClusterStateError.Stopped, "the cluster state client is stopping");
        }

        if (command.Timestamp == default)
        {
            command = command with { Timestamp = _time.GetUtcNow() };
        }

        var payload = ClusterStateCodec.EncodeProposal(new Proposal { Id = Guid.NewGuid(), Command = command });
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        var started = _time.GetTimestamp();
        var tried = new List<string>();
        while (true)
        {
            for (var attempt = 0; attempt < _options.Voters.Count; attempt++)
            {
                var index = (Volatile.Read(ref _preferred) + attempt) % _options.Voters.Count;
                var voter = _options.Voters[index];
                var (status, body, reached) = await SendAsync(voter, type, payload, linked.Token).ConfigureAwait(false);
                if (!reached)
                {
                    tried.Add($"{voter} unreachable");
                    continue;
                }

                if (status == ForwardStatus.NotLeader)
                {
                    tried.Add($"{voter} not leader");
                    continue;
                }

                Volatile.Write(ref _preferred, index);
                if (status == ForwardStatus.Refused)
                {
                    throw new ClusterStateException(ClusterStateError.Refused, $"the leader refused the {command.GetType().Name}: {Encoding.UTF8.GetString(body)}");
                }

                if (status == ForwardStatus.Failed)
                {
                    throw new ClusterStateException(
                        ClusterStateError.OutcomeUnknown,
                        $"the leader took the {command.GetType().Name} but could not confirm it ({Encoding.UTF8.GetString(body)}); " +
                        "it may or may not be applied: read the state, or retry (creates are idempotent per request id)")
                    { MayHaveBeenApplied = true };
                }

                var result = ClusterStateCodec.DecodeResult(body);
                if (result.Revision > 0)
                {
                    await WaitForRevisionAsync(result.Revision, linked.Token).ConfigureAwait(false);
                }

                return result;
            }

            if (_time.GetElapsedTime(started) >= _options.NoQuorumTimeout)
            {
                var seen = string.Join(", ", tried.Distinct().TakeLast(_options.Voters.Count));
                throw new ClusterStateException(
                    ClusterStateError.NoQuorum,
                    $"no quorum: no KVDB voter accepted the change within {_options.NoQuorumTimeout.TotalSeconds:0.#} s [{seen}]; " +
                    "start or reconnect voters until a majority runs");
            }

            tried.Clear();
            await Task.Delay(RetryPause, _time, linked.Token).ConfigureAwait(false);
        }
    }

    /// <summary>Waits (up to about two watch rounds) until the read copy reaches <paramref name="revision"/>.</summary>
    private async Task WaitForRevisionAsync(long revision, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (Current.Revision < revision && _time.GetElapsedTime(started) < _options.WatchWait * 2)
        {
            Task refreshed;
            lock (_gate)
            {
                refreshed = _refreshed.Task;
            }

            if (Current.Revision >= revision)
            {
                return;
            }

            await Task.WhenAny(refreshed, Task.Delay(RetryPause, _time, cancellationToken)).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    private async Task WatchLoopAsync(CancellationToken stop)
    {
        var request = new byte[12];
        var index = 0;
        while (!stop.IsCancellationRequested)
        {
            var voter = _options.Voters[index % _options.Voters.Count];
            BinaryPrimitives.WriteInt64LittleEndian(request, Current.Revision);
            BinaryPrimitives.WriteInt32LittleEndian(request.AsSpan(8), (int)_options.WatchWait.TotalMilliseconds);
            var (status, body, reached) = await SendAsync(voter, ForwardRequest.Watch, request, stop).ConfigureAwait(false);
            if (!reached || status != ForwardStatus.Done || !TryApplyWatch(body))
            {
                index++;
                try
                {
                    await Task.Delay(RetryPause * 2, _time, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private bool TryApplyWatch(byte[] body)
    {
        try
        {
            var infoLength = BinaryPrimitives.ReadInt32LittleEndian(body);
            if (infoLength < 0 || infoLength > body.Length - 4)
            {
                return false;
            }

            var info = System.Text.Json.JsonSerializer.Deserialize(body.AsSpan(4, infoLength), ClusterStateJsonContext.Default.WatchInfo) ?? new WatchInfo();
            var stateBytes = body.AsMemory(4 + infoLength);
            var state = stateBytes.Length > 0 ? ClusterStateCodec.DecodeState(stateBytes) : null;
            var previousLeader = LeaderId;
            TaskCompletionSource refreshed;
            lock (_gate)
            {
                _info = info;
                if (state is not null && state.Revision >= _current.Revision)
                {
                    Volatile.Write(ref _current, state);
                }

                refreshed = _refreshed;
                _refreshed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }

            Interlocked.Exchange(ref _lastAnswer, _time.GetTimestamp());
            refreshed.TrySetResult();
            if (state is not null)
            {
                CurrentChanged?.Invoke(this, state);
            }

            if (previousLeader != info.Leader)
            {
                LeaderChanged?.Invoke(this, info.Leader);
            }

            return true;
        }
        catch (Exception e) when (e is ClusterStateFormatException or System.Text.Json.JsonException or ArgumentException)
        {
            Log.BadWatchAnswer(_logger, e.Message);
            return false;
        }
    }

    private async Task<(ForwardStatus Status, byte[] Body, bool Reached)> SendAsync(IPEndPoint voter, ForwardRequest type, byte[] payload, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.RequestTimeout + (type == ForwardRequest.Watch ? _options.WatchWait : TimeSpan.Zero));
        try
        {
            var (status, body) = await ProposalChannel.SendAsync(voter, type, payload, TimeSpan.FromSeconds(1), timeout.Token).ConfigureAwait(false);
            return (status, body, true);
        }
        catch (SocketException)
        {
            return (ForwardStatus.NotLeader, [], false); // nothing was sent
        }
        catch (Exception e) when (e is IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            if (type == ForwardRequest.Watch)
            {
                return (ForwardStatus.Failed, [], false);
            }

            return (ForwardStatus.Failed, Encoding.UTF8.GetBytes($"connection to {voter} broke: {e.Message}"), true);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        await _watchLoop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Warning, Message = "Ignored a malformed watch answer: {Reason}")]
        public static partial void BadWatchAnswer(ILogger logger, string reason);
    }
}
