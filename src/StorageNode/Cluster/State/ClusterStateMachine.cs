using System.Buffers;
using System.Collections.Concurrent;
using DotNext.IO;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.Extensions.Logging;

namespace Slab.Cluster.State;

/// <summary>One applied command, as <see cref="ClusterStateNode.StateChanged"/> reports it.</summary>
public sealed class ClusterStateChangedEventArgs(long logIndex, ClusterState previous, ClusterState current, ClusterCommand command, CommandResult result)
    : EventArgs
{
    /// <summary>Raft log index of the command.</summary>
    public long LogIndex { get; } = logIndex;

    public ClusterState Previous { get; } = previous;

    /// <summary>The state after the command (the same reference as <see cref="Previous"/> when it was rejected).</summary>
    public ClusterState Current { get; } = current;

    public ClusterCommand Command { get; } = command;

    public CommandResult Result { get; } = result;
}

/// <summary>
/// The Raft state machine: applies committed log entries (encoded <see cref="Proposal"/>s) to the
/// in-memory <see cref="ClusterState"/> through the pure <see cref="ClusterStateTransitions.Apply"/>,
/// and every <c>snapshotInterval</c> commands persists the whole state as a snapshot so the WAL can
/// drop the entries before it. DotNext calls <see cref="ApplyAsync"/> one entry at a time, in log order.
/// </summary>
internal sealed partial class ClusterStateMachine : SimpleStateMachine
{
    private readonly ConcurrentDictionary<Guid, TaskCompletionSource<CommandResult>> _waiters = new();
    private readonly int _snapshotInterval;
    private readonly ILogger _logger;
    private volatile ClusterState _current = ClusterState.Empty;
    private ClusterState _snapshotState = ClusterState.Empty;
    private long _sinceSnapshot;
    private long _lastAppliedIndex;

    public ClusterStateMachine(DirectoryInfo location, int snapshotInterval, ILogger logger)
        : base(location)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(snapshotInterval, 1);
        _snapshotInterval = snapshotInterval;
        _logger = logger;
    }

    /// <summary>The state after the last applied entry. Safe to read from any thread.</summary>
    public ClusterState Current => _current;

    /// <summary>Log index of the last applied command entry (0 before any).</summary>
    public long LastAppliedIndex => Interlocked.Read(ref _lastAppliedIndex);

    /// <summary>Raised on the applier after each command entry; handlers must be quick and must not block.</summary>
    public event EventHandler<ClusterStateChangedEventArgs>? Applied;

    /// <summary>
    /// Registers interest in the result of proposal <paramref name="id"/>; the task completes when
    /// this node applies it. Call <see cref="Forget"/> when giving up.
    /// </summary>
    public Task<CommandResult> WaitForResult(Guid id) =>
        _waiters.GetOrAdd(id, static _ => new TaskCompletionSource<CommandResult>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void Forget(Guid id) => _waiters.TryRemove(id, out _);

    /// <summary>Fails every waiting proposal (on shutdown).</summary>
    public void FailWaiters(Exception error)
    {
        foreach (var id in _waiters.Keys)
        {
            if (_waiters.TryRemove(id, out var waiter))
            {
                waiter.TrySetException(error);
            }
        }
    }

    protected override ValueTask<bool> ApplyAsync(LogEntry entry, CancellationToken token)
    {
        // Configuration entries (handed to the configuration storage) and leaders' no-op entries
        // reach us without payload.
        if (!entry.TryGetPayload(out var payload) || payload.IsEmpty)
        {
            return ValueTask.FromResult(false);
        }

        Proposal proposal;
        try
        {
            proposal = ClusterStateCodec.DecodeProposal(payload);
        }
        catch (ClusterStateFormatException e)
        {
            // Skipping an entry would make this node's state diverge from the others': stop applying.
            Log.UndecodableEntry(_logger, entry.Index, e.Message);
            throw;
        }

        var previous = _current;
        var outcome = ClusterStateTransitions.Apply(previous, proposal.Command);
        _current = outcome.State;
        Interlocked.Exchange(ref _lastAppliedIndex, entry.Index);

        if (_waiters.TryRemove(proposal.Id, out var waiter))
        {
            waiter.TrySetResult(outcome.Result);
        }

        var handlers = Applied;
        if (handlers is not null)
        {
            try
            {
                handlers(this, new ClusterStateChangedEventArgs(entry.Index, previous, outcome.State, proposal.Command, outcome.Result));
            }
            catch (Exception e)
            {
                Log.HandlerFailed(_logger, e);
            }
        }

        if (++_sinceSnapshot < _snapshotInterval)
        {
            return ValueTask.FromResult(false);
        }

        _sinceSnapshot = 0;
        _snapshotState = outcome.State;
        return ValueTask.FromResult(true);
    }

    protected override ValueTask PersistAsync(IAsyncBinaryWriter writer, CancellationToken token)
    {
        var buffer = new ArrayBufferWriter<byte>(64 * 1024);
        ClusterStateCodec.EncodeState(_snapshotState, buffer);
        Log.SnapshotWritten(_logger, _snapshotState.Revision, buffer.WrittenCount);
        return writer.WriteAsync(buffer.WrittenMemory, lengthFormat: null, token);
    }

    protected override async ValueTask RestoreAsync(FileInfo snapshotFile, CancellationToken token)
    {
        var bytes = await File.ReadAllBytesAsync(snapshotFile.FullName, token).ConfigureAwait(false);
        var state = ClusterStateCodec.DecodeState(bytes);
        _current = _snapshotState = state;
        _sinceSnapshot = 0;
        Log.SnapshotRestored(_logger, snapshotFile.Name, state.Revision, state.Nodes.Count, state.Volumes.Count);
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Critical, Message = "Cannot decode Raft log entry {Index}: {Reason}; this node stops applying the log")]
        public static partial void UndecodableEntry(ILogger logger, long index, string reason);

        [LoggerMessage(Level = LogLevel.Warning, Message = "A cluster state change handler failed")]
        public static partial void HandlerFailed(ILogger logger, Exception exception);

        [LoggerMessage(Level = LogLevel.Debug, Message = "Cluster state snapshot at revision {Revision}: {Bytes} bytes")]
        public static partial void SnapshotWritten(ILogger logger, long revision, int bytes);

        [LoggerMessage(Level = LogLevel.Information, Message = "Restored cluster state from {File}: revision {Revision}, {Nodes} nodes, {Volumes} volumes")]
        public static partial void SnapshotRestored(ILogger logger, string file, long revision, int nodes, int volumes);
    }
}
