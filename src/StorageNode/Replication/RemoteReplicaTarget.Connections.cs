using Microsoft.Extensions.Logging;
using Slab.Block;

namespace Slab.Replication;

// The connection pool: a fixed set of channels, each holding at most one open connection, used
// round-robin; reconnects are single-flight per channel and share one backoff per node.
public sealed partial class RemoteReplicaTarget
{
    private readonly IReplicaConnector _connector;
    private readonly Guid _localNodeId;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly Channel[] _channels;
    private readonly Lock _backoffLock = new();
    private int _next;
    private int _failures;
    private long _nextAttemptAt;
    private bool _disposed;

    /// <summary>Connections currently open (tests).</summary>
    internal int OpenConnections
    {
        get
        {
            var open = 0;
            foreach (var channel in _channels)
            {
                if (channel.Current is { IsOpen: true })
                {
                    open++;
                }
            }

            return open;
        }
    }

    /// <summary>Closes every connection; requests in flight fail with <see cref="BlockError.IOError"/>, later ones with <see cref="BlockError.Closed"/>.</summary>
    public async ValueTask DisposeAsync()
    {
        Volatile.Write(ref _disposed, true);
        foreach (var channel in _channels)
        {
            await channel.DisposeAsync();
        }
    }

    /// <summary>
    /// An open connection: the next channel's when it has one (no waiting), else that channel
    /// reconnects. While the node's backoff runs, another channel's open connection serves instead;
    /// with none open the request fails at once.
    /// </summary>
    private ValueTask<ReplicaClientConnection> GetConnectionAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed))
        {
            throw new BlockTargetException(BlockError.Closed, $"the replica target of volume {VolumeId} on node {RemoteName} is closed");
        }

        var channel = _channels[(int)((uint)Interlocked.Increment(ref _next) % (uint)_channels.Length)];
        if (channel.Current is { IsOpen: true } open)
        {
            return new ValueTask<ReplicaClientConnection>(open);
        }

        try
        {
            return new ValueTask<ReplicaClientConnection>(channel.ConnectAsync(cancellationToken));
        }
        catch (BlockTargetException) when (AnyOpen() is { } alive)
        {
            return new ValueTask<ReplicaClientConnection>(alive);
        }
    }

    /// <summary>
    /// The next channel's open connection (or, when it has none and the node backs off, any open one)
    /// without waiting; null when the caller must take the async path (<paramref name="failure"/> null:
    /// reconnect) or fail (<paramref name="failure"/> set).
    /// </summary>
    private ReplicaClientConnection? TryGetOpenConnection(out BlockTargetException? failure)
    {
        failure = null;
        if (Volatile.Read(ref _disposed))
        {
            failure = new BlockTargetException(BlockError.Closed, $"the replica target of volume {VolumeId} on node {RemoteName} is closed");
            return null;
        }

        var channel = _channels[(int)((uint)Interlocked.Increment(ref _next) % (uint)_channels.Length)];
        if (channel.Current is { IsOpen: true } open)
        {
            return open;
        }

        Interlocked.Decrement(ref _next);
        return null;
    }

    private ReplicaClientConnection? AnyOpen()
    {
        foreach (var channel in _channels)
        {
            if (channel.Current is { IsOpen: true } open)
            {
                return open;
            }
        }

        return null;
    }

    /// <summary>Throws <see cref="BlockError.IOError"/> while the node's backoff runs.</summary>
    private void ThrowIfBackingOff()
    {
        lock (_backoffLock)
        {
            if (_failures == 0)
            {
                return;
            }

            var now = _timeProvider.GetTimestamp();
            if (now < _nextAttemptAt)
            {
                var wait = _timeProvider.GetElapsedTime(now, _nextAttemptAt);
                throw new BlockTargetException(BlockError.IOError, $"replica node {RemoteName} is unreachable ({_failures} failed connects); next attempt in {wait}");
            }
        }
    }

    private TimeSpan RecordConnectFailure()
    {
        lock (_backoffLock)
        {
            _failures++;
            var ticks = _options.ReconnectBackoffMin.Ticks << Math.Min(_failures - 1, 30);
            var backoff = ticks <= 0 || ticks > _options.ReconnectBackoffMax.Ticks ? _options.ReconnectBackoffMax : TimeSpan.FromTicks(ticks);
            _nextAttemptAt = _timeProvider.GetTimestamp() + (long)(backoff.TotalSeconds * _timeProvider.TimestampFrequency);
            return backoff;
        }
    }

    private void RecordConnectSuccess()
    {
        lock (_backoffLock)
        {
            _failures = 0;
        }
    }

    /// <summary>One pooled connection and its single-flight reconnect.</summary>
    private sealed class Channel(RemoteReplicaTarget owner)
    {
        private readonly Lock _lock = new();
        private Task<ReplicaClientConnection>? _connecting;
        private ReplicaClientConnection? _current;

        public ReplicaClientConnection? Current => Volatile.Read(ref _current);

        public Task<ReplicaClientConnection> ConnectAsync(CancellationToken cancellationToken)
        {
            Task<ReplicaClientConnection> connecting;
            lock (_lock)
            {
                if (_current is { IsOpen: true } open)
                {
                    return Task.FromResult(open);
                }

                if (_connecting is null || _connecting.IsCompleted)
                {
                    owner.ThrowIfBackingOff();
                    _connecting = ConnectCoreAsync();
                }

                connecting = _connecting;
            }

            return connecting.WaitAsync(cancellationToken);
        }

        private async Task<ReplicaClientConnection> ConnectCoreAsync()
        {
            // Off the channel's lock and the caller's thread.
            await Task.Yield();
            var previous = Interlocked.Exchange(ref _current, null);
            if (previous is not null)
            {
                await previous.DisposeAsync();
            }

            ReplicaClientConnection connection;
            try
            {
                connection = await ReplicaClientConnection.ConnectAsync(
                    owner._connector, owner._options, owner._localNodeId, owner._timeProvider, owner._logger, CancellationToken.None);
            }
            catch (Exception ex)
            {
                var backoff = owner.RecordConnectFailure();
                ReplicaLog.ClientConnectFailed(owner._logger, owner.RemoteName, ex.Message, backoff);
                throw ex as BlockTargetException
                    ?? new BlockTargetException(BlockError.IOError, $"replica node {owner.RemoteName}: connect failed: {ex.Message}", ex);
            }

            owner.RecordConnectSuccess();
            if (Volatile.Read(ref owner._disposed))
            {
                await connection.DisposeAsync();
                throw new BlockTargetException(BlockError.Closed, $"the replica target of volume {owner.VolumeId} on node {owner.RemoteName} is closed");
            }

            Volatile.Write(ref _current, connection);
            return connection;
        }

        public async ValueTask DisposeAsync()
        {
            Task<ReplicaClientConnection>? connecting;
            lock (_lock)
            {
                connecting = _connecting;
            }

            if (connecting is not null)
            {
                try
                {
                    await connecting;
                }
                catch (Exception)
                {
                    // A failed connect left nothing to close.
                }
            }

            var current = Interlocked.Exchange(ref _current, null);
            if (current is not null)
            {
                await current.DisposeAsync();
            }
        }
    }
}
