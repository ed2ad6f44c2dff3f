using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Slab.Cluster.Membership;

public sealed partial class GossipMembership
{
    private async Task ReceiveLoopAsync(Socket socket, CancellationToken stop)
    {
        var buffer = GC.AllocateUninitializedArray<byte>(GossipCodec.MaxDatagramBytes, pinned: true);
        EndPoint any = socket.AddressFamily == AddressFamily.InterNetworkV6 ? new IPEndPoint(IPAddress.IPv6Any, 0) : new IPEndPoint(IPAddress.Any, 0);
        while (!stop.IsCancellationRequested)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                // ICMP errors of earlier sends surface here on some stacks; the socket stays usable.
                if (stop.IsCancellationRequested)
                {
                    return;
                }

                Log.ReceiveFailed(_logger, e.SocketErrorCode);
                continue;
            }

            Merge(buffer.AsSpan(0, received.ReceivedBytes), received.RemoteEndPoint);
            DatagramProcessed?.Invoke();
        }
    }

    /// <summary>Merges one datagram into the view: all of it, or (malformed, corrupted, foreign) none of it.</summary>
    internal void Merge(ReadOnlySpan<byte> datagram, EndPoint from)
    {
        var error = GossipCodec.TryOpen(datagram, _clusterIdUtf8, out var reader);
        if (error == GossipDecodeError.None)
        {
            var check = reader;
            while (check.TryRead(out _))
            {
            }

            if (check.Malformed)
            {
                error = GossipDecodeError.Malformed;
            }
        }

        if (error != GossipDecodeError.None)
        {
            Interlocked.Increment(ref _dropped);
            if (error == GossipDecodeError.ForeignCluster)
            {
                WarnForeign(from);
            }
            else
            {
                Log.Dropped(_logger, from, error);
            }

            return;
        }

        Interlocked.Increment(ref _received);
        List<MemberView>? changes = null;
        var nowUtc = _time.GetUtcNow();
        var now = _time.GetTimestamp();
        Span<char> name = stackalloc char[GossipCodec.MaxIdBytes];
        lock (_lock)
        {
            while (reader.TryRead(out var entry))
            {
                var id = name[..Encoding.UTF8.GetChars(entry.NodeIdUtf8, name)];
                if (id.SequenceEqual(_options.NodeId))
                {
                    if (entry.Generation > _generation || (entry.Generation == _generation && _advertise is { } self && !entry.Matches(self)))
                    {
                        Log.DuplicateNodeId(_logger, _options.NodeId, from);
                    }

                    continue;
                }

                if (_membersByName.TryGetValue(id, out var record))
                {
                    if (entry.Generation < record.Generation || (entry.Generation == record.Generation && entry.Heartbeat <= record.Heartbeat))
                    {
                        continue;
                    }

                    if (!entry.Matches(record.EndPoint))
                    {
                        record.EndPoint = entry.ToEndPoint();
                    }
                }
                else
                {
                    if (_members.Count >= MaxMembers)
                    {
                        continue;
                    }

                    record = new MemberRecord(id.ToString(), entry.ToEndPoint());
                    _members.Add(record.NodeId, record);
                }

                record.Generation = entry.Generation;
                record.Heartbeat = entry.Heartbeat;
                record.Stats = entry.Stats;
                record.LastHeard = nowUtc;
                record.LastHeardTimestamp = now;
                if (!record.ReportedAlive)
                {
                    record.ReportedAlive = true;
                    (changes ??= []).Add(record.ToView(alive: true));
                }
            }
        }

        RaiseChanges(changes);
    }

    private void WarnForeign(EndPoint from)
    {
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastForeignWarning);
        if ((last == long.MinValue || _time.GetElapsedTime(last, now) >= TimeSpan.FromMinutes(1))
            && Interlocked.CompareExchange(ref _lastForeignWarning, now, last) == last)
        {
            Log.ForeignCluster(_logger, from);
        }
    }

    /// <summary>One heartbeat: liveness transitions, forgetting, then one datagram to the chosen targets.</summary>
    internal void Tick()
    {
        if (_stopping.IsCancellationRequested || Interlocked.Exchange(ref _ticking, 1) == 1)
        {
            return;
        }

        try
        {
            var socket = _socket;
            var self = _advertise;
            if (socket is null || self is null)
            {
                return;
            }

            var heartbeat = Interlocked.Increment(ref _heartbeat);
            _lastLocalStats = _localStats();
            List<MemberView>? changes = null;
            int length;
            lock (_lock)
            {
                changes = SweepLiveness();
                length = WriteDatagram(self, heartbeat);
                ChooseTargets();
            }

            foreach (var target in _targets)
            {
                try
                {
                    socket.SendTo(_sendBuffer.AsSpan(0, length), SocketFlags.None, target);
                }
                catch (SocketException e)
                {
                    Log.SendFailed(_logger, target, e.SocketErrorCode);
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
            }

            RaiseChanges(changes);
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }

    /// <summary>Marks members offline whose heartbeat stalled and forgets long-silent ones; fills <see cref="_live"/>. Caller holds the lock.</summary>
    private List<MemberView>? SweepLiveness()
    {
        List<MemberView>? changes = null;
        List<string>? forget = null;
        var now = _time.GetTimestamp();
        _live.Clear();
        foreach (var record in _members.Values)
        {
            var silence = _time.GetElapsedTime(record.LastHeardTimestamp, now);
            var alive = silence < _options.OfflineAfter;
            if (alive)
            {
                _live.Add(record);
            }

            if (alive != record.ReportedAlive)
            {
                record.ReportedAlive = alive;
                (changes ??= []).Add(record.ToView(alive));
            }

            if (silence >= _options.ForgetAfter)
            {
                (forget ??= []).Add(record.NodeId);
            }
        }

        if (forget is not null)
        {
            foreach (var id in forget)
            {
                _members.Remove(id);
                Log.NodeForgotten(_logger, id, _options.ForgetAfter.TotalHours);
            }
        }

        return changes;
    }

    /// <summary>This node's entry, then live members from a rotating start until the datagram is full. Caller holds the lock.</summary>
    private int WriteDatagram(IPEndPoint self, long heartbeat)
    {
        var writer = GossipCodec.StartWriting(_sendBuffer, _options.ClusterId);
        writer.TryAdd(_options.NodeId, self, _generation, heartbeat, _lastLocalStats);
        var count = _live.Count;
        var added = 0;
        for (; added < count; added++)
        {
            var record = _live[(_relayCursor + added) % count];
            if (!writer.TryAdd(record.NodeId, record.EndPoint, record.Generation, record.Heartbeat, record.Stats))
            {
                break;
            }
        }

        _relayCursor = count == 0 ? 0 : (_relayCursor + Math.Max(added, 1)) % count;
        return writer.Finish();
    }

    /// <summary><see cref="GossipOptions.Fanout"/> random live members plus one probe (an unanswered seed or an offline member, in turn). Caller holds the lock.</summary>
    private void ChooseTargets()
    {
        _targets.Clear();
        var live = _live.Count;
        for (var i = 0; i < Math.Min(_options.Fanout, live); i++)
        {
            var pick = Random.Shared.Next(i, live);
            (_live[i], _live[pick]) = (_live[pick], _live[i]);
            _targets.Add(_live[i].EndPoint);
        }

        _probes.Clear();
        _probeSet.Clear();
        foreach (var seed in _seeds)
        {
            if (!IsLiveEndPoint(seed) && _probeSet.Add(seed))
            {
                _probes.Add(seed);
            }
        }

        foreach (var record in _members.Values)
        {
            if (!record.ReportedAlive && _probeSet.Add(record.EndPoint))
            {
                _probes.Add(record.EndPoint);
            }
        }

        if (_probes.Count > 0)
        {
            var probe = _probes[_probeCursor++ % _probes.Count];
            if (!_targets.Contains(probe))
            {
                _targets.Add(probe);
            }
        }
    }

    private bool IsLiveEndPoint(IPEndPoint endPoint)
    {
        foreach (var record in _live)
        {
            if (record.EndPoint.Equals(endPoint))
            {
                return true;
            }
        }

        return false;
    }
}
