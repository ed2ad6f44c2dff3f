using System.Collections.Concurrent;
using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Slab.Api.V1;

namespace Slab.Tests.Cli;

/// <summary>
/// A minimal slabd stand-in: the real server-side service bases on a temp unix socket (and a
/// loopback TCP port), answering from canned state. Every request is recorded so tests can
/// assert what was sent, or that nothing was.
/// </summary>
internal sealed class FakeSlabServer : IAsyncDisposable
{
    private const ulong GiB = 1UL << 30;
    private readonly WebApplication _app;
    private readonly string _directory;

    private FakeSlabServer(WebApplication app, string directory, string socketPath, FakeState state)
    {
        _app = app;
        _directory = directory;
        SocketPath = socketPath;
        State = state;
    }

    public string SocketPath { get; }

    public string UnixEndpoint => "unix://" + SocketPath;

    public string TcpEndpoint { get; private set; } = "";

    public FakeState State { get; }

    public static async Task<FakeSlabServer> StartAsync()
    {
        // Short path: sun_path is limited to 108 bytes.
        var directory = Path.Combine(Path.GetTempPath(), "slabctl-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        var socketPath = Path.Combine(directory, "api.sock");

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.ListenUnixSocket(socketPath, l => l.Protocols = HttpProtocols.Http2);
            k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2);
        });
        var state = new FakeState();
        builder.Services.AddSingleton(state);
        builder.Services.AddGrpc();
        var app = builder.Build();
        app.MapGrpcService<FakeVolumes>();
        app.MapGrpcService<FakeSnapshots>();
        app.MapGrpcService<FakeMountAttach>();
        app.MapGrpcService<FakeNode>();
        app.MapGrpcService<FakeCluster>();
        await app.StartAsync();

        var server = new FakeSlabServer(app, directory, socketPath, state);
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        var tcp = new Uri(addresses.First(a => a.StartsWith("http://127.0.0.1", StringComparison.Ordinal)));
        server.TcpEndpoint = $"127.0.0.1:{tcp.Port}";
        return server;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>Canned cluster state and the log of requests received.</summary>
    internal sealed class FakeState
    {
        public ConcurrentQueue<(string Method, IMessage Request)> Calls { get; } = new();

        public List<Volume> Volumes { get; } = [Db(), Logs()];

        public StatusResponse Status { get; set; } = DefaultStatus();

        public ClusterInfo Cluster { get; set; } = DefaultCluster();

        public ClusterOptions Options { get; } = new() { ReplMoveTimeoutSeconds = 86_400 };

        /// <summary>When set, every Cluster call fails with it (not clustered, no quorum).</summary>
        public Status? ClusterFailure { get; set; }

        public void Record(string method, IMessage request) => Calls.Enqueue((method, request));

        public Volume Find(string name) =>
            Volumes.FirstOrDefault(v => v.Name == name || v.Id == name)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"volume \"{name}\" not found"));

        private static Volume Db()
        {
            var v = new Volume
            {
                Id = "vol-db", Name = "db", State = "up", UsedBytes = 2 * GiB, CreatedUnixMs = 1_700_000_000_000, SnapshotCount = 1, Formatted = true,
                Spec = new VolumeSpec { SizeBytes = 10 * GiB, Repl = 2, Fs = "ext4", IoPriority = IoPriority.High },
                Attachment = new Attachment { NodeId = "n2", NodeName = "node-2", DevicePath = "/dev/nbd0", Method = "kernel-nbd" },
            };
            v.Spec.Labels.Add("app", "db");
            v.Attachment.MountPaths.Add("/mnt/db");
            v.Replicas.Add(new Replica { NodeId = "n1", NodeName = "node-1", PoolId = "p0", State = "in-sync", NodeOnline = true });
            v.Replicas.Add(new Replica { NodeId = "n2", NodeName = "node-2", PoolId = "p0", State = "in-sync", NodeOnline = true });
            return v;
        }

        private static Volume Logs() => new()
        {
            Id = "vol-logs", Name = "logs", State = "up", Spec = new VolumeSpec { SizeBytes = 512UL << 20, Repl = 1, IoPriority = IoPriority.Low },
        };

        private static StatusResponse DefaultStatus()
        {
            var s = new StatusResponse
            {
                NodeId = "n1", NodeName = "node-1", Status = "online", ClusterId = "cluster-1", Version = "0.1.0-test",
                NodesOnline = 1, NodesTotal = 1, TotalBytes = 100 * GiB, UsedBytes = 2 * GiB, ProvisionedBytes = 11 * GiB,
                VolumeCount = 2, AttachedCount = 1, NbdSocket = "/run/slab/nbd.sock",
            };
            s.Pools.Add(Pool());
            return s;
        }

        /// <summary>Three KVDB nodes (node-3 offline and unreachable) and node-4, which stores only.</summary>
        private static ClusterInfo DefaultCluster()
        {
            var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            var c = new ClusterInfo
            {
                ClusterId = "cluster-1", Clustered = true, LeaderNodeId = "n1", LeaderNodeName = "node-1", HasQuorum = true,
                Revision = 42, VolumeCount = 2, TotalBytes = 300 * GiB, UsedBytes = 6 * GiB, LocalNodeId = "n1",
            };
            c.Nodes.Add(ClusterNode(1, "online", now, replicas: 2, attached: 0, kvdb: true));
            c.Nodes.Add(ClusterNode(2, "online", now - 3_000, replicas: 2, attached: 1, kvdb: true));
            c.Nodes.Add(ClusterNode(3, "offline", now - 600_000, replicas: 0, attached: 0, kvdb: true));
            c.Nodes.Add(ClusterNode(4, "online", now - 1_000, replicas: 0, attached: 0, kvdb: false));
            c.KvdbMembers.Add(c.Nodes.Where(n => n.Kvdb).Select(Member));
            return c;
        }

        /// <summary>The KVDB member a voting node is (reachable while online).</summary>
        public static KvdbMember Member(ClusterNode n) => new()
        {
            MemberId = n.RaftEndpoint, NodeId = n.Id, NodeName = n.Name, IsLeader = n.IsLeader, IsLocal = n.IsLocal, Reachable = n.Status == "online",
        };

        /// <summary>What this node's Status says about <see cref="Cluster"/> (the local node's own fields as in <see cref="DefaultStatus"/>).</summary>
        public StatusResponse ClusteredStatus()
        {
            var s = DefaultStatus();
            s.Clustered = true;
            s.HasQuorum = Cluster.HasQuorum;
            s.LeaderNodeId = Cluster.LeaderNodeId;
            s.LeaderNodeName = Cluster.LeaderNodeName;
            s.NodesOnline = (uint)Cluster.Nodes.Count(n => n.Status == "online");
            s.NodesTotal = (uint)Cluster.Nodes.Count;
            s.KvdbMembers.Add(Cluster.KvdbMembers);
            s.ClusterTotalBytes = Cluster.TotalBytes;
            s.ClusterUsedBytes = Cluster.UsedBytes;
            s.VolumeCount = 7;
            s.AttachedCount = 2;
            return s;
        }

        private static ClusterNode ClusterNode(int i, string status, long lastSeen, uint replicas, uint attached, bool kvdb)
        {
            var n = new ClusterNode
            {
                Id = $"n{i}", Name = $"node-{i}", Status = status, Zone = i == 3 ? "z2" : "z1", Rack = $"r{i}",
                ApiEndpoint = $"10.0.0.{i}:9501", DataEndpoint = $"10.0.0.{i}:9503", RaftEndpoint = $"10.0.0.{i}:9504", GossipEndpoint = $"10.0.0.{i}:9505",
                Kvdb = kvdb, IsLeader = i == 1, IsLocal = i == 1, TotalBytes = 100 * GiB, UsedBytes = 2 * GiB, ProvisionedBytes = 11 * GiB,
                ReplicaCount = replicas, AttachedCount = attached, LastSeenUnixMs = lastSeen, Load = 0.25 * i, Version = "0.1.0-test",
                RegisteredUnixMs = 1_700_000_000_000,
            };
            n.Labels.Add("disk", "ssd");
            n.Pools.Add(Pool());
            return n;
        }

        /// <summary>What a node started without --cluster-id answers: itself, not clustered.</summary>
        public static ClusterInfo SingleNodeCluster()
        {
            var c = new ClusterInfo { ClusterId = "cluster-1", Revision = 0, VolumeCount = 2, TotalBytes = 100 * GiB, UsedBytes = 2 * GiB, LocalNodeId = "n1" };
            var n = ClusterNode(1, "online", 0, replicas: 2, attached: 1, kvdb: false);
            n.IsLeader = false;
            c.Nodes.Add(n);
            return c;
        }

        /// <summary>A node by id, name or API address, as slabd resolves them.</summary>
        public ClusterNode FindNode(string node) =>
            Cluster.Nodes.FirstOrDefault(n => n.Id == node || n.Name == node || n.ApiEndpoint == node || n.ApiEndpoint.Split(':')[0] == node)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"node \"{node}\" not found"));

        public static Pool Pool()
        {
            var p = new Pool
            {
                Id = "p0", IoPriority = IoPriority.High, TotalBytes = 100 * GiB, UsedBytes = 2 * GiB, ProvisionedBytes = 11 * GiB,
                OvercommitRatio = 2, MeasuredIops = 50000, MeasuredMbps = 1200,
            };
            p.Drives.Add(new Drive { Id = "d0", Path = "/dev/vdb", MountPath = "/var/lib/slab/d0", TotalBytes = 100 * GiB, UsedBytes = 2 * GiB, Status = "online" });
            return p;
        }
    }

    private sealed class FakeVolumes(FakeState state) : Slab.Api.V1.Volumes.VolumesBase
    {
        public override Task<Volume> Create(CreateVolumeRequest request, ServerCallContext context)
        {
            state.Record(nameof(Create), request);
            if (request.Name.Contains('!', StringComparison.Ordinal))
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"invalid volume name \"{request.Name}\": use letters, digits, '-', '_' and '.'"));
            if (state.Volumes.Any(v => v.Name == request.Name))
                throw new RpcException(new Status(StatusCode.AlreadyExists, $"volume \"{request.Name}\" already exists"));
            return Task.FromResult(new Volume { Id = "vol-" + request.Name, Name = request.Name, State = "up", Spec = request.Spec });
        }

        public override Task<Volume> Inspect(InspectVolumeRequest request, ServerCallContext context)
        {
            state.Record(nameof(Inspect), request);
            return Task.FromResult(state.Find(request.Volume));
        }

        public override Task<EnumerateVolumesResponse> Enumerate(EnumerateVolumesRequest request, ServerCallContext context)
        {
            state.Record(nameof(Enumerate), request);
            var response = new EnumerateVolumesResponse();
            response.Volumes.Add(state.Volumes.Where(v => request.Labels.All(l => v.Spec.Labels.TryGetValue(l.Key, out var value) && value == l.Value)));
            return Task.FromResult(response);
        }

        public override Task<Volume> Update(UpdateVolumeRequest request, ServerCallContext context)
        {
            state.Record(nameof(Update), request);
            var v = state.Find(request.Volume).Clone();
            if (request.HasSizeBytes)
            {
                if (request.SizeBytes < v.Spec.SizeBytes)
                    throw new RpcException(new Status(StatusCode.InvalidArgument, "volumes cannot shrink"));
                v.Spec.SizeBytes = request.SizeBytes;
            }
            return Task.FromResult(v);
        }

        public override Task<DeleteVolumeResponse> Delete(DeleteVolumeRequest request, ServerCallContext context)
        {
            state.Record(nameof(Delete), request);
            var v = state.Find(request.Volume);
            if (v.Attachment is not null)
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"volume \"{v.Name}\" is attached on {v.Attachment.NodeName}; detach it first"));
            return Task.FromResult(new DeleteVolumeResponse());
        }

        public override Task<Volume> Clone(CloneVolumeRequest request, ServerCallContext context)
        {
            state.Record(nameof(Clone), request);
            state.Find(request.Source.Split('@')[0]);
            return Task.FromResult(new Volume { Id = "vol-" + request.Name, Name = request.Name, Source = request.Source, State = "up" });
        }
    }

    private sealed class FakeSnapshots(FakeState state) : Snapshots.SnapshotsBase
    {
        public override Task<Snapshot> Create(CreateSnapshotRequest request, ServerCallContext context)
        {
            state.Record(nameof(Create), request);
            var v = state.Find(request.Volume);
            return Task.FromResult(new Snapshot { Id = "snap-" + request.Name, Name = request.Name, VolumeId = v.Id, VolumeName = v.Name, SizeBytes = v.Spec.SizeBytes });
        }

        public override Task<CreateGroupSnapshotResponse> CreateGroup(CreateGroupSnapshotRequest request, ServerCallContext context)
        {
            state.Record(nameof(CreateGroup), request);
            var response = new CreateGroupSnapshotResponse();
            foreach (var volume in request.Volumes)
            {
                var v = state.Find(volume);
                response.Snapshots.Add(new Snapshot { Id = "snap-" + v.Name, Name = request.Name, VolumeId = v.Id, VolumeName = v.Name, SizeBytes = v.Spec.SizeBytes, CreatedUnixMs = 1_700_000_000_000 });
            }

            return Task.FromResult(response);
        }

        public override Task<EnumerateSnapshotsResponse> Enumerate(EnumerateSnapshotsRequest request, ServerCallContext context)
        {
            state.Record(nameof(Enumerate), request);
            var v = state.Find(request.Volume);
            var response = new EnumerateSnapshotsResponse();
            response.Snapshots.Add(new Snapshot { Id = "snap-1", Name = "nightly", VolumeId = v.Id, VolumeName = v.Name, SizeBytes = v.Spec.SizeBytes, CreatedUnixMs = 1_700_000_000_000 });
            return Task.FromResult(response);
        }

        public override Task<Volume> Restore(RestoreSnapshotRequest request, ServerCallContext context)
        {
            state.Record(nameof(Restore), request);
            var v = state.Find(request.Volume);
            if (request.Snapshot != "nightly")
                throw new RpcException(new Status(StatusCode.NotFound, $"snapshot \"{request.Snapshot}\" of volume \"{v.Name}\" not found"));
            return Task.FromResult(v);
        }

        public override Task<DeleteSnapshotResponse> Delete(DeleteSnapshotRequest request, ServerCallContext context)
        {
            state.Record(nameof(Delete), request);
            state.Find(request.Volume);
            return Task.FromResult(new DeleteSnapshotResponse());
        }
    }

    private sealed class FakeMountAttach(FakeState state) : MountAttach.MountAttachBase
    {
        public override Task<AttachResponse> Attach(AttachRequest request, ServerCallContext context)
        {
            state.Record(nameof(Attach), request);
            state.Find(request.Volume);
            return Task.FromResult(new AttachResponse { DevicePath = "/dev/nbd3", Attachment = new Attachment { NodeId = "n1", NodeName = "node-1", DevicePath = "/dev/nbd3", Method = "kernel-nbd" } });
        }

        public override Task<DetachResponse> Detach(DetachRequest request, ServerCallContext context)
        {
            state.Record(nameof(Detach), request);
            var v = state.Find(request.Volume);
            if (v.Attachment?.MountPaths.Count > 0)
                throw new RpcException(new Status(StatusCode.FailedPrecondition, $"volume \"{v.Name}\" is mounted at {v.Attachment.MountPaths[0]}; unmount it first"));
            return Task.FromResult(new DetachResponse());
        }

        public override Task<MountResponse> Mount(MountRequest request, ServerCallContext context)
        {
            state.Record(nameof(Mount), request);
            state.Find(request.Volume);
            return Task.FromResult(new MountResponse { DevicePath = "/dev/nbd3", Path = request.Path, Fs = "ext4" });
        }

        public override Task<UnmountResponse> Unmount(UnmountRequest request, ServerCallContext context)
        {
            state.Record(nameof(Unmount), request);
            state.Find(request.Volume);
            return Task.FromResult(new UnmountResponse());
        }
    }

    private sealed class FakeNode(FakeState state) : Node.NodeBase
    {
        public override Task<StatusResponse> Status(StatusRequest request, ServerCallContext context)
        {
            state.Record(nameof(Status), request);
            return Task.FromResult(state.Status);
        }

        public override Task<PoolsResponse> Pools(PoolsRequest request, ServerCallContext context)
        {
            state.Record(nameof(Pools), request);
            var response = new PoolsResponse();
            response.Pools.Add(FakeState.Pool());
            return Task.FromResult(response);
        }
    }

    private sealed class FakeCluster(FakeState state) : Slab.Api.V1.Cluster.ClusterBase
    {
        public override Task<ClusterInfo> Inspect(ClusterInspectRequest request, ServerCallContext context) =>
            Answer(nameof(Inspect), request, () => state.Cluster);

        public override Task<ListNodesResponse> ListNodes(ListNodesRequest request, ServerCallContext context) =>
            Answer(nameof(ListNodes), request, () => new ListNodesResponse { Nodes = { state.Cluster.Nodes } });

        public override Task<ClusterNode> InspectNode(InspectNodeRequest request, ServerCallContext context) =>
            Answer(nameof(InspectNode), request, () => state.FindNode(request.Node));

        public override Task<KvdbMembersResponse> KvdbMembers(KvdbMembersRequest request, ServerCallContext context) =>
            Answer(nameof(KvdbMembers), request, Members);

        public override Task<KvdbMembersResponse> AddKvdbMember(AddKvdbMemberRequest request, ServerCallContext context) =>
            Answer(nameof(AddKvdbMember), request, () =>
            {
                var n = state.FindNode(request.Node);
                if (n.Kvdb)
                    throw new RpcException(new Status(StatusCode.AlreadyExists, $"node {n.Name} is already a KVDB member"));
                n.Kvdb = true;
                state.Cluster.KvdbMembers.Add(FakeState.Member(n));
                return Members();
            });

        public override Task<KvdbMembersResponse> RemoveKvdbMember(RemoveKvdbMemberRequest request, ServerCallContext context) =>
            Answer(nameof(RemoveKvdbMember), request, () =>
            {
                var m = state.Cluster.KvdbMembers.FirstOrDefault(m => m.MemberId == request.Member || m.NodeId == request.Member || m.NodeName == request.Member)
                    ?? throw new RpcException(new Status(StatusCode.NotFound, $"\"{request.Member}\" is not a KVDB member"));
                state.Cluster.KvdbMembers.Remove(m);
                return Members();
            });

        public override Task<ClusterNode> SetMaintenance(SetMaintenanceRequest request, ServerCallContext context) =>
            Answer(nameof(SetMaintenance), request, () =>
            {
                var n = state.FindNode(request.Node.Length == 0 ? state.Cluster.LocalNodeId : request.Node).Clone();
                n.Status = request.Enter ? "maintenance" : "online";
                return n;
            });

        public override Task<ClusterOptions> GetOptions(GetClusterOptionsRequest request, ServerCallContext context) =>
            Answer(nameof(GetOptions), request, () => state.Options.Clone());

        public override Task<ClusterOptions> UpdateOptions(UpdateClusterOptionsRequest request, ServerCallContext context) =>
            Answer(nameof(UpdateOptions), request, () =>
            {
                if (request.HasReplMoveTimeoutSeconds)
                    state.Options.ReplMoveTimeoutSeconds = request.ReplMoveTimeoutSeconds;
                if (request.HasResyncRateBytesPerSecond)
                    state.Options.ResyncRateBytesPerSecond = request.ResyncRateBytesPerSecond;
                return state.Options.Clone();
            });

        public override Task<DecommissionResponse> Decommission(DecommissionRequest request, ServerCallContext context) =>
            Answer(nameof(Decommission), request, () =>
            {
                var n = state.FindNode(request.Node);
                if (n.AttachedCount > 0)
                    throw new RpcException(new Status(StatusCode.FailedPrecondition, $"node {n.Name} has {n.AttachedCount} attached volume(s); detach them first"));
                if (n.ReplicaCount > 0)
                {
                    n.Status = "decommissioning";
                    return new DecommissionResponse { ReplicasMoving = n.ReplicaCount };
                }

                state.Cluster.Nodes.Remove(n);
                return new DecommissionResponse { Removed = true };
            });

        private KvdbMembersResponse Members() => new() { Members = { state.Cluster.KvdbMembers } };

        private Task<T> Answer<T>(string method, IMessage request, Func<T> answer)
        {
            state.Record(method, request);
            if (state.ClusterFailure is { } failure)
                throw new RpcException(failure);
            return Task.FromResult(answer());
        }
    }
}
