using Slab.Common;
using System.Collections.Immutable;

namespace Slab.Cluster.State;

/// <summary>A state after a command and the command's result.</summary>
public readonly record struct ApplyOutcome(ClusterState State, CommandResult Result);

/// <summary>
/// The pure transition function of the cluster state: <c>apply(state, command) → (state', result)</c>.
/// No I/O, no clock, no randomness: equal inputs give equal outputs on every node. A rejected
/// command returns the input state unchanged (same reference). Every accepted command increments
/// <see cref="ClusterState.Revision"/>.
/// </summary>
public static partial class ClusterStateTransitions
{
    /// <summary>Largest replica count a volume may ask for.</summary>
    public const int MaxRepl = 3;

    private const long BlockSize = 4096;

    public static ApplyOutcome Apply(ClusterState state, ClusterCommand command)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(command);
        var outcome = command switch
        {
            RegisterNode c => RegisterNode(state, c),
            UpdateNode c => UpdateNode(state, c),
            SetNodeStatus c => SetNodeStatus(state, c),
            RemoveNode c => RemoveNode(state, c),
            CreateVolume c => CreateVolume(state, c),
            DeleteVolume c => DeleteVolume(state, c),
            UpdateVolume c => UpdateVolume(state, c),
            SetReplicaSet c => SetReplicaSet(state, c),
            SetReplicaState c => SetReplicaState(state, c),
            ChangeReplication c => ChangeReplication(state, c),
            MoveReplica c => MoveReplica(state, c),
            SetClusterOptions c => SetClusterOptions(state, c),
            AttachVolume c => Attach(state, c),
            DetachVolume c => Detach(state, c),
            CreateSnapshot c => CreateSnapshot(state, c),
            DeleteSnapshot c => DeleteSnapshot(state, c),
            CommitSnapshot c => CommitSnapshot(state, c),
            AddSnapshotHolder c => AddSnapshotHolder(state, c),
            FinishRestore c => FinishRestore(state, c),
            _ => Reject(state, Rejection.InvalidArgument, $"unknown command {command.GetType().Name}; upgrade this node"),
        };

        return outcome.Result.IsSuccess
            ? outcome with { State = outcome.State with { Revision = state.Revision + 1 } }
            : outcome;
    }

    // ---- nodes ----

    private static ApplyOutcome RegisterNode(ClusterState state, RegisterNode c)
    {
        if (string.IsNullOrEmpty(c.NodeId))
        {
            return Reject(state, Rejection.InvalidArgument, "node id is empty");
        }

        if (!VolumeNames.IsValid(c.Name))
        {
            return Reject(state, Rejection.InvalidArgument, VolumeNames.Invalid(c.Name, "node"));
        }

        foreach (var other in state.Nodes.Values)
        {
            if (other.Name == c.Name && other.Id != c.NodeId)
            {
                return Reject(state, Rejection.AlreadyExists,
                    $"node name '{c.Name}' is already used by node {other.Id}; give this node another name or remove node {other.Id} first");
            }
        }

        var pools = ValidatePools(c.Pools);
        if (pools is not null)
        {
            return Reject(state, Rejection.InvalidArgument, pools);
        }

        state.Nodes.TryGetValue(c.NodeId, out var existing);
        var node = new NodeInfo
        {
            Id = c.NodeId,
            Name = c.Name,
            Addresses = c.Addresses,
            Zone = c.Zone,
            Rack = c.Rack,
            Labels = c.Labels,
            Pools = c.Pools,
            IsKvdbVoter = c.IsKvdbVoter,
            Registered = existing?.Registered ?? c.Timestamp,
            StatusSince = existing?.Status is NodeStatus.Maintenance or NodeStatus.Decommissioning or NodeStatus.Online ? existing.StatusSince : c.Timestamp,

            // A re-registering node is back; maintenance and decommissioning are operator decisions and stay.
            Status = existing?.Status is NodeStatus.Maintenance or NodeStatus.Decommissioning ? existing.Status : NodeStatus.Online,
        };
        return Ok(state with { Nodes = state.Nodes.SetItem(node.Id, node) }, CommandResult.Ok());
    }

    private static ApplyOutcome UpdateNode(ClusterState state, UpdateNode c)
    {
        if (!state.Nodes.TryGetValue(c.NodeId, out var node))
        {
            return NodeNotFound(state, c.NodeId);
        }

        if (c.Pools is { } newPools && ValidatePools(newPools) is { } error)
        {
            return Reject(state, Rejection.InvalidArgument, error);
        }

        node = node with
        {
            Addresses = c.Addresses ?? node.Addresses,
            Zone = c.Zone ?? node.Zone,
            Rack = c.Rack ?? node.Rack,
            Labels = c.Labels ?? node.Labels,
            Pools = c.Pools ?? node.Pools,
            IsKvdbVoter = c.IsKvdbVoter ?? node.IsKvdbVoter,
        };
        return Ok(state with { Nodes = state.Nodes.SetItem(node.Id, node) }, CommandResult.Ok());
    }

    private static ApplyOutcome SetNodeStatus(ClusterState state, SetNodeStatus c)
    {
        if (!state.Nodes.TryGetValue(c.NodeId, out var node))
        {
            return NodeNotFound(state, c.NodeId);
        }

        if (!Enum.IsDefined(c.Status))
        {
            return Reject(state, Rejection.InvalidArgument, $"unknown node status {(int)c.Status}");
        }

        var since = node.Status == c.Status ? node.StatusSince : c.Timestamp;
        return Ok(state with { Nodes = state.Nodes.SetItem(node.Id, node with { Status = c.Status, StatusSince = since }) }, CommandResult.Ok());
    }

    private static ApplyOutcome RemoveNode(ClusterState state, RemoveNode c)
    {
        if (!state.Nodes.ContainsKey(c.NodeId))
        {
            return NodeNotFound(state, c.NodeId);
        }

        var replicas = 0;
        string? example = null;
        foreach (var volume in state.Volumes.Values)
        {
            if (volume.Attachment?.NodeId == c.NodeId)
            {
                return Reject(state, Rejection.NodeInUse,
                    $"node {c.NodeId} has volume '{volume.Name}' attached; detach it (or attach it elsewhere with takeover) before removing the node");
            }

            if (volume.FindReplica(c.NodeId) is not null)
            {
                replicas++;
                example ??= volume.Name;
            }
        }

        if (replicas > 0)
        {
            return Reject(state, Rejection.NodeInUse,
                $"node {c.NodeId} still holds {replicas} replica(s) (e.g. of volume '{example}'); decommission it so they move, then remove it");
        }

        return Ok(state with { Nodes = state.Nodes.Remove(c.NodeId) }, CommandResult.Ok());
    }

    // ---- volumes ----

    private static ApplyOutcome CreateVolume(ClusterState state, CreateVolume c)
    {
        if (string.IsNullOrEmpty(c.RequestId))
        {
            return Reject(state, Rejection.InvalidArgument, "request id is empty; every create needs a client request id so retries are safe");
        }

        if (string.IsNullOrEmpty(c.VolumeId))
        {
            return Reject(state, Rejection.InvalidArgument, "volume id is empty");
        }

        if (!VolumeNames.IsValid(c.Name))
        {
            return Reject(state, Rejection.InvalidArgument, VolumeNames.Invalid(c.Name, "volume"));
        }

        if (state.VolumeIdsByName.TryGetValue(c.Name, out var existingId))
        {
            var existing = state.Volumes[existingId];
            return existing.CreateRequestId == c.RequestId
                ? new ApplyOutcome(state, CommandResult.Ok(existing)) // a retry: same answer, no change
                : Reject(state, Rejection.AlreadyExists,
                    $"volume '{c.Name}' already exists (id {existing.Id}); choose another name, or delete the existing volume first");
        }

        if (state.Volumes.ContainsKey(c.VolumeId))
        {
            return Reject(state, Rejection.AlreadyExists, $"volume id {c.VolumeId} is already used; propose the create with a fresh id");
        }

        if (ValidateSpec(c.Spec) is { } specError)
        {
            return Reject(state, Rejection.InvalidArgument, specError);
        }

        var volume = new VolumeInfo
        {
            Id = c.VolumeId,
            Name = c.Name,
            Spec = c.Spec,
            Created = c.Timestamp,
            CreateRequestId = c.RequestId,
            Origin = c.Origin,
        };
        if (c.Origin is { } origin && ValidateOrigin(state, c, origin) is { } badOrigin)
        {
            return new ApplyOutcome(state, badOrigin);
        }

        if (!c.Replicas.IsDefaultOrEmpty)
        {
            if (ValidateReplicaSet(state, volume, c.Replicas) is { } placement)
            {
                return new ApplyOutcome(state, placement);
            }

            volume = volume with { Replicas = [.. c.Replicas.Select(r => r with { StateSince = c.Timestamp })] };
        }

        return Ok(
            state with
            {
                Volumes = state.Volumes.Add(volume.Id, volume),
                VolumeIdsByName = state.VolumeIdsByName.Add(volume.Name, volume.Id),
            },
            CommandResult.Ok(volume));
    }

    private static ApplyOutcome DeleteVolume(ClusterState state, DeleteVolume c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.Attachment is { Purpose: AttachPurpose.Host } attachment)
        {
            return Reject(state, Rejection.VolumeAttached,
                $"volume '{volume.Name}' is attached on node {attachment.NodeId} ({attachment.Device}); detach it before deleting");
        }

        if (volume.Attachment is { Purpose: AttachPurpose.Restore } restore)
        {
            return Reject(state, Rejection.VolumeAttached,
                $"volume '{volume.Name}' is being restored by node {restore.NodeId}; wait for the restore to finish, then delete it");
        }

        return Ok(
            state with
            {
                Volumes = state.Volumes.Remove(volume.Id),
                VolumeIdsByName = state.VolumeIdsByName.Remove(volume.Name),
            },
            CommandResult.Ok(volume));
    }

    private static ApplyOutcome UpdateVolume(ClusterState state, UpdateVolume c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        var spec = volume.Spec;
        if (c.SizeBytes is { } size)
        {
            if (size < spec.SizeBytes)
            {
                return Reject(state, Rejection.InvalidArgument,
                    $"volume '{volume.Name}' is {Sizes.Human(spec.SizeBytes)}; shrinking to {Sizes.Human(size)} is not supported (volumes only grow)");
            }

            if (size % BlockSize != 0)
            {
                return Reject(state, Rejection.InvalidArgument, $"size {size} is not a multiple of {BlockSize} bytes");
            }

            spec = spec with { SizeBytes = size };
        }

        if (c.Labels is { } labels)
        {
            spec = spec with { Labels = labels };
        }

        if (c.LabelChanges is { } changes)
        {
            if (!VolumeNames.TryMergeLabels(spec.Labels, changes, out var merged, out var problem))
            {
                return Reject(state, Rejection.InvalidArgument, problem!);
            }

            spec = spec with { Labels = merged };
        }

        if (c.Limits is { } limits)
        {
            if (!IoLimitSyntax.TryValidate(limits, out var problem))
            {
                return Reject(state, Rejection.InvalidArgument, problem);
            }

            spec = spec with { Limits = limits };
        }

        volume = volume with { Spec = spec };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    private static ApplyOutcome SetReplicaSet(ClusterState state, SetReplicaSet c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (CheckEpoch(volume, c.ExpectedEpoch) is { } stale)
        {
            return new ApplyOutcome(state, stale);
        }

        var replicas = c.Replicas.IsDefault ? [] : c.Replicas;
        if (ValidateReplicaSet(state, volume, replicas) is { } invalid)
        {
            return new ApplyOutcome(state, invalid);
        }

        var oldInSync = InSyncNodes(volume.Replicas);
        var newInSync = InSyncNodes(replicas);
        if (oldInSync.Count > 0)
        {
            if (newInSync.Count == 0)
            {
                return Reject(state, Rejection.LastInSyncReplica,
                    $"volume '{volume.Name}' would have no in-sync replica; keep at least one of {string.Join(", ", oldInSync)} in sync");
            }

            foreach (var node in newInSync)
            {
                if (!oldInSync.Contains(node))
                {
                    return Reject(state, Rejection.InvalidArgument,
                        $"replica on node {node} was not in sync; add it as catching-up and promote it with SetReplicaState after resync");
                }
            }
        }

        volume = volume with
        {
            Replicas = replicas,
            Epoch = oldInSync.SetEquals(newInSync) ? volume.Epoch : volume.Epoch + 1,
        };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    private static ApplyOutcome SetReplicaState(ClusterState state, SetReplicaState c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (CheckEpoch(volume, c.ExpectedEpoch) is { } stale)
        {
            return new ApplyOutcome(state, stale);
        }

        if (!Enum.IsDefined(c.State))
        {
            return Reject(state, Rejection.InvalidArgument, $"unknown replica state {(int)c.State}");
        }

        var index = -1;
        for (var i = 0; i < volume.Replicas.Length; i++)
        {
            if (volume.Replicas[i].NodeId == c.NodeId)
            {
                index = i;
                break;
            }
        }

        if (index < 0)
        {
            return Reject(state, Rejection.ReplicaNotFound,
                $"volume '{volume.Name}' has no replica on node {c.NodeId}; its replicas are on {DescribeNodes(volume.Replicas)}");
        }

        var current = volume.Replicas[index];
        if (current.State == c.State)
        {
            return Ok(state, CommandResult.Ok(volume));
        }

        var inSync = InSyncNodes(volume.Replicas);
        if (current.State == ReplicaState.InSync && inSync.Count == 1)
        {
            return Reject(state, Rejection.LastInSyncReplica,
                $"the replica on node {c.NodeId} is the last in-sync replica of volume '{volume.Name}'; it cannot leave the in-sync set");
        }

        if (c.State == ReplicaState.InSync && current.State is not (ReplicaState.CatchingUp or ReplicaState.Rebuilding) && inSync.Count > 0)
        {
            return Reject(state, Rejection.InvalidArgument,
                $"the replica on node {c.NodeId} is {current.State}; it must be catching up or rebuilding before it can be in sync");
        }

        var changesInSyncSet = (current.State == ReplicaState.InSync) != (c.State == ReplicaState.InSync);
        var replicas = volume.Replicas.SetItem(index, current with { State = c.State, StateSince = c.Timestamp });
        if (c.State == ReplicaState.InSync && current.Replaces.Length > 0)
        {
            // A replacement in sync: the replica it replaces leaves (it is deleted, never read again).
            replicas = [.. replicas.Where(r => r.NodeId != current.Replaces).Select(r => r.NodeId == current.NodeId ? r with { Replaces = "" } : r)];
        }

        volume = volume with
        {
            Replicas = replicas,
            Epoch = changesInSyncSet ? volume.Epoch + 1 : volume.Epoch,
        };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    private static ApplyOutcome ChangeReplication(ClusterState state, ChangeReplication c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (c.Repl is < 1 or > MaxRepl)
        {
            return Reject(state, Rejection.InvalidArgument, $"repl {c.Repl} must be between 1 and {MaxRepl}");
        }

        var old = volume.Replicas;
        if (old.FirstOrDefault(r => r.Replaces.Length > 0) is { } moving)
        {
            return Reject(state, Rejection.InvalidArgument,
                $"volume '{volume.Name}' is moving its replica off node {moving.Replaces} (to node {moving.NodeId}); change its replica count when the move is done");
        }

        if (c.Repl == old.Length)
        {
            return Reject(state, Rejection.InvalidArgument, $"volume '{volume.Name}' already has {old.Length} replica(s)");
        }

        if (c.Replicas.IsDefault || c.Replicas.Length != c.Repl)
        {
            return Reject(state, Rejection.InvalidArgument,
                $"the new replica set of volume '{volume.Name}' must hold {c.Repl} replica(s); the leader prepares it");
        }

        var raising = c.Repl > old.Length;
        foreach (var replica in c.Replicas)
        {
            if (replica is null)
            {
                return Reject(state, Rejection.InvalidArgument, "a replica is missing");
            }

            if (volume.FindReplica(replica.NodeId) is { } kept)
            {
                if (kept with { StateSince = default } != replica with { StateSince = default })
                {
                    return Reject(state, Rejection.InvalidArgument,
                        $"the replica on node {replica.NodeId} must stay as it is ({kept.State}, pool {kept.PoolId}) while the replica count changes");
                }
            }
            else if (!raising)
            {
                return Reject(state, Rejection.InvalidArgument, $"lowering repl removes replicas; node {replica.NodeId} holds none of volume '{volume.Name}'");
            }
            else if (replica.State != ReplicaState.Rebuilding || string.IsNullOrEmpty(replica.Incarnation))
            {
                return Reject(state, Rejection.InvalidArgument, $"the new replica on node {replica.NodeId} must start rebuilding, with an incarnation");
            }
        }

        var changed = volume with { Spec = volume.Spec with { Repl = c.Repl } };
        if (ValidateReplicaSet(state, changed, c.Replicas) is { } invalid)
        {
            return new ApplyOutcome(state, invalid);
        }

        if (InSyncNodes(old).Count > 0 && InSyncNodes(c.Replicas).Count == 0)
        {
            return Reject(state, Rejection.LastInSyncReplica,
                $"volume '{volume.Name}' would have no in-sync replica; keep one of {string.Join(", ", InSyncNodes(old))}");
        }

        changed = changed with { Replicas = [.. c.Replicas.Select(r => volume.FindReplica(r.NodeId) ?? r with { StateSince = c.Timestamp })] };
        return Ok(state with { Volumes = state.Volumes.SetItem(changed.Id, changed) }, CommandResult.Ok(changed));
    }

    private static ApplyOutcome MoveReplica(ClusterState state, MoveReplica c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.FindReplica(c.FromNode) is null)
        {
            return Reject(state, Rejection.ReplicaNotFound, $"volume '{volume.Name}' has no replica on node {c.FromNode}");
        }

        if (volume.Replicas.FirstOrDefault(r => r.Replaces.Length > 0) is { } moving)
        {
            return Reject(state, Rejection.AlreadyExists, $"volume '{volume.Name}' is already moving its replica off node {moving.Replaces}");
        }

        if (c.Replacement is not { } replacement || replacement.Replaces != c.FromNode || replacement.State != ReplicaState.Rebuilding
            || string.IsNullOrEmpty(replacement.Incarnation) || volume.FindReplica(replacement.NodeId) is not null)
        {
            return Reject(state, Rejection.InvalidArgument,
                $"the replacement of volume '{volume.Name}''s replica on node {c.FromNode} must be a new rebuilding replica on another node, with an incarnation; the leader places it");
        }

        var replicas = volume.Replicas.Add(replacement with { StateSince = c.Timestamp });
        if (ValidateReplicaSet(state, volume with { Spec = volume.Spec with { Repl = volume.Replicas.Length + 1 } }, replicas) is { } invalid)
        {
            return new ApplyOutcome(state, invalid);
        }

        volume = volume with { Replicas = replicas };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    private static ApplyOutcome SetClusterOptions(ClusterState state, SetClusterOptions c)
    {
        if (c.ReplMoveTimeoutSeconds is < 0)
        {
            return Reject(state, Rejection.InvalidArgument, $"repl-move-timeout {c.ReplMoveTimeoutSeconds} s must be 0 (never) or positive");
        }

        if (c.ResyncBytesPerSecond is < 0)
        {
            return Reject(state, Rejection.InvalidArgument, $"resync rate {c.ResyncBytesPerSecond} must be 0 (unlimited) or positive");
        }

        var options = state.Options with
        {
            ReplMoveTimeoutSeconds = c.ReplMoveTimeoutSeconds ?? state.Options.ReplMoveTimeoutSeconds,
            ResyncBytesPerSecond = c.ResyncBytesPerSecond ?? state.Options.ResyncBytesPerSecond,
        };
        return Ok(state with { Options = options }, CommandResult.Ok());
    }

    private static ApplyOutcome Attach(ClusterState state, AttachVolume c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (!state.Nodes.TryGetValue(c.NodeId, out var node))
        {
            return NodeNotFound(state, c.NodeId);
        }

        if (!Enum.IsDefined(c.Purpose))
        {
            return Reject(state, Rejection.InvalidArgument, $"unknown attach purpose {(int)c.Purpose}");
        }

        if (c.Purpose == AttachPurpose.Restore && ValidateRestore(state, volume, c) is { } badRestore)
        {
            return new ApplyOutcome(state, badRestore);
        }

        if (volume.Attachment is { } current && current.NodeId == c.NodeId)
        {
            if ((current.Purpose == c.Purpose && current.RestoreSnapshotId == c.RestoreSnapshotId) || c.Purpose == AttachPurpose.Resync)
            {
                return Ok(state, CommandResult.Ok(volume)); // already attached here: idempotent (a resync never replaces another attachment)
            }

            if (current.Purpose == AttachPurpose.Resync && c.Purpose == AttachPurpose.Host)
            {
                // A host attach where this node runs a resync: it shares the controller open here, so no fencing.
                volume = volume with { Attachment = current with { Purpose = AttachPurpose.Host, Device = c.Device, Since = c.Timestamp } };
                return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
            }

            if (current.Purpose is not (AttachPurpose.Resync or AttachPurpose.Snapshot))
            {
                return Reject(state, Rejection.AttachedElsewhere, $"volume '{volume.Name}' is {Describe(current)} on this node; wait for it to end");
            }
        }

        if (node.Status != NodeStatus.Online)
        {
            return Reject(state, Rejection.NodeUnavailable,
                $"node {node.Name} ({node.Id}) is {node.Status}; attach on an online node");
        }

        var epoch = volume.Epoch;
        var replicas = volume.Replicas;
        if (volume.Attachment is { } holder)
        {
            // Internal resync and snapshot attachments yield to a host attach (anywhere); anything else
            // moves only by a takeover from a dead holder.
            var yields = holder.Purpose is AttachPurpose.Resync or AttachPurpose.Snapshot && c.Purpose == AttachPurpose.Host;
            if (!yields)
            {
                if (c.TakeOverFrom != holder.NodeId)
                {
                    return Reject(state, Rejection.AttachedElsewhere,
                        $"volume '{volume.Name}' is {Describe(holder)} on node {holder.NodeId} since {holder.Since:u}; " +
                        $"detach it there first, or, if node {holder.NodeId} is dead, attach with takeover from {holder.NodeId}");
                }

                if (holder.Purpose == AttachPurpose.Restore)
                {
                    replicas = AfterInterruptedRestore(volume, holder, c.Timestamp);
                }
            }

            epoch++; // fence the old holder: its I/O carries the old epoch and replicas refuse it
        }

        volume = volume with
        {
            Attachment = new AttachmentInfo
            {
                NodeId = c.NodeId,
                Device = c.Device,
                Since = c.Timestamp,
                Purpose = c.Purpose,
                RestoreSnapshotId = c.Purpose == AttachPurpose.Restore ? c.RestoreSnapshotId : "",
                RestoreSource = c.Purpose == AttachPurpose.Restore ? c.RestoreSource : "",
            },
            Epoch = epoch,
            Replicas = replicas,
        };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    /// <summary>How an attachment reads in a refusal: "attached", "being restored", ...</summary>
    private static string Describe(AttachmentInfo attachment) => attachment.Purpose switch
    {
        AttachPurpose.Resync => "attached internally for a resync",
        AttachPurpose.Snapshot => "being snapshotted",
        AttachPurpose.Restore => "being restored",
        _ => $"attached ({attachment.Device})",
    };

    private static ApplyOutcome Detach(ClusterState state, DetachVolume c)
    {
        if (state.FindVolume(c.Volume) is not { } volume)
        {
            return VolumeNotFound(state, c.Volume);
        }

        if (volume.Attachment is null || (c.Purpose is { } purpose && volume.Attachment.Purpose != purpose))
        {
            return Ok(state, CommandResult.Ok(volume));
        }

        if (volume.Attachment.NodeId != c.NodeId)
        {
            return Reject(state, Rejection.NotAttachedHere,
                $"volume '{volume.Name}' is attached on node {volume.Attachment.NodeId}, not on node {c.NodeId}; detach it from {volume.Attachment.NodeId}");
        }

        volume = volume with { Attachment = null };
        return Ok(state with { Volumes = state.Volumes.SetItem(volume.Id, volume) }, CommandResult.Ok(volume));
    }

    // ---- validation helpers ----

    private static string? ValidateSpec(VolumeSpec? spec)
    {
        if (spec is null)
        {
            return "volume spec is missing";
        }

        if (spec.SizeBytes <= 0 || spec.SizeBytes % BlockSize != 0)
        {
            return $"size {spec.SizeBytes} must be a positive multiple of {BlockSize} bytes";
        }

        if (spec.Repl is < 1 or > MaxRepl)
        {
            return $"repl {spec.Repl} must be between 1 and {MaxRepl}";
        }

        if (spec.Fs is not ("ext4" or "xfs" or "none"))
        {
            return $"filesystem '{spec.Fs}' is not supported; use ext4, xfs or none";
        }

        return Enum.IsDefined(spec.IoPriority) ? null : $"unknown io priority {(int)spec.IoPriority}";
    }

    private static string? ValidatePools(ImmutableArray<PoolSummary> pools)
    {
        if (pools.IsDefault)
        {
            return null;
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pool in pools)
        {
            if (string.IsNullOrEmpty(pool.Id) || !ids.Add(pool.Id))
            {
                return $"pool ids must be present and distinct ('{pool.Id}')";
            }
        }

        return null;
    }

    /// <summary>Distinct known nodes, at most repl replicas, pools known, node selector matched; new replicas only on online nodes.</summary>
    private static CommandResult? ValidateReplicaSet(ClusterState state, VolumeInfo volume, ImmutableArray<ReplicaInfo> replicas)
    {
        if (replicas.Length > volume.Spec.Repl)
        {
            return CommandResult.Reject(Rejection.PlacementViolation,
                $"volume '{volume.Name}' has repl {volume.Spec.Repl} but {replicas.Length} replicas were given; raise repl first");
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var replica in replicas)
        {
            if (replica is null || string.IsNullOrEmpty(replica.NodeId))
            {
                return CommandResult.Reject(Rejection.InvalidArgument, "a replica has no node id");
            }

            if (!seen.Add(replica.NodeId))
            {
                return CommandResult.Reject(Rejection.PlacementViolation,
                    $"two replicas of volume '{volume.Name}' on node {replica.NodeId}; replicas must be on distinct nodes");
            }

            if (!Enum.IsDefined(replica.State))
            {
                return CommandResult.Reject(Rejection.InvalidArgument, $"unknown replica state {(int)replica.State}");
            }

            if (!state.Nodes.TryGetValue(replica.NodeId, out var node))
            {
                return CommandResult.Reject(Rejection.NodeNotFound, $"replica node {replica.NodeId} is not a registered node");
            }

            var hasPool = false;
            foreach (var pool in node.Pools)
            {
                hasPool |= pool.Id == replica.PoolId;
            }

            if (!hasPool)
            {
                return CommandResult.Reject(Rejection.PlacementViolation,
                    $"node {node.Name} ({node.Id}) has no pool {replica.PoolId}");
            }

            foreach (var (key, value) in volume.Spec.NodeSelector)
            {
                if (!node.Labels.TryGetValue(key, out var actual) || actual != value)
                {
                    return CommandResult.Reject(Rejection.PlacementViolation,
                        $"node {node.Name} ({node.Id}) does not carry label {key}={value}, which volume '{volume.Name}' requires");
                }
            }

            if (volume.FindReplica(replica.NodeId) is null && node.Status != NodeStatus.Online)
            {
                return CommandResult.Reject(Rejection.NodeUnavailable,
                    $"node {node.Name} ({node.Id}) is {node.Status}; place new replicas on online nodes");
            }
        }

        return null;
    }

    private static CommandResult? CheckEpoch(VolumeInfo volume, long? expected) =>
        expected is { } e && e != volume.Epoch
            ? CommandResult.Reject(Rejection.StaleEpoch,
                $"volume '{volume.Name}' is at epoch {volume.Epoch}, not {e}; re-read the volume and retry")
            : null;

    private static HashSet<string> InSyncNodes(ImmutableArray<ReplicaInfo> replicas)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (var replica in replicas)
        {
            if (replica.State == ReplicaState.InSync)
            {
                set.Add(replica.NodeId);
            }
        }

        return set;
    }

    private static string DescribeNodes(ImmutableArray<ReplicaInfo> replicas) =>
        replicas.IsEmpty ? "no node" : string.Join(", ", replicas.Select(r => r.NodeId));

    private static ApplyOutcome NodeNotFound(ClusterState state, string nodeId) =>
        Reject(state, Rejection.NodeNotFound, $"no node with id '{nodeId}' is registered; list nodes with 'slabctl cluster list'");

    private static ApplyOutcome VolumeNotFound(ClusterState state, string volume) =>
        Reject(state, Rejection.VolumeNotFound, $"no volume named or with id '{volume}'; list volumes with 'slabctl volume list'");

    private static ApplyOutcome Ok(ClusterState state, CommandResult result) => new(state, result);

    private static ApplyOutcome Reject(ClusterState state, Rejection rejection, string message) =>
        new(state, CommandResult.Reject(rejection, message));
}
