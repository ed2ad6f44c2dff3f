using Slab.Common;
using Slab.Block;
using Slab.Hosting;
using Slab.Store;
using Slab.Volumes;
using Xunit;

namespace Slab.Tests.VolumeLayer;

public sealed class VolumeLayerTests
{
    /// <summary>A memory replica whose writes can be held open, to test draining.</summary>
    private sealed class GatedReplica(long size) : IReplicaTarget
    {
        private readonly MemoryBlockTarget _memory = new(size);

        public TaskCompletionSource? Hold { get; set; }

        public long Size => _memory.Size;

        public BlockTargetFeatures Features => _memory.Features;

        public BlockGeometry Geometry => _memory.Geometry;

        public int Writes;

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => _memory.ReadAsync(offset, destination, cancellationToken);

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken)
        {
            if (Hold is { } hold)
            {
                await hold.Task;
            }

            await _memory.WriteAsync(offset, source, flags, cancellationToken);
            Interlocked.Increment(ref Writes);
        }

        public ValueTask FlushAsync(CancellationToken cancellationToken) => _memory.FlushAsync(cancellationToken);

        public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => _memory.TrimAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken) => _memory.WriteZeroesAsync(offset, length, flags, cancellationToken);

        public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken) => _memory.GetExtentsAsync(offset, length, destination, cancellationToken);

        public void Grow(long newSizeBytes) => _memory.Resize(newSizeBytes);

        public long Epoch { get; set; }

        public void Dispose()
        {
        }
    }

    private static VolumeController Controller(IReplicaTarget replica)
        => new("v1", "v", 1 << 20, 1, [new ReplicaMember("n1", "node-1", replica, ReplicaMode.InSync, IsLocal: true)], authority: null, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);

    [Fact]
    public async Task Pause_waits_for_in_flight_writes_and_holds_new_ones()
    {
        var replica = new GatedReplica(1 << 20) { Hold = new TaskCompletionSource() };
        using var controller = Controller(replica);
        var inFlight = controller.WriteAsync(0, new byte[4096], BlockWriteFlags.None, default).AsTask();

        var pausing = controller.PauseWritesAsync(default);
        Assert.False(pausing.IsCompleted, "the pause must wait for the write in flight");
        replica.Hold.SetResult();
        await inFlight;
        var pause = await pausing;
        replica.Hold = null;

        var held = controller.WriteAsync(4096, new byte[4096], BlockWriteFlags.None, default).AsTask();
        var heldTrim = controller.TrimAsync(0, 4096, default).AsTask();
        Assert.Equal(1, replica.Writes);
        Assert.False(held.IsCompleted);
        Assert.False(heldTrim.IsCompleted);

        // Reads and flushes go on during a pause.
        await controller.ReadAsync(0, new byte[4096], default);
        await controller.FlushAsync(default);

        await pause.DisposeAsync();
        await held;
        await heldTrim;
        Assert.Equal(2, replica.Writes);
    }

    /// <summary>
    /// A replica whose writes complete before they are returned, as a remote replica's do when the
    /// response wins the race with the caller: a value task backed by a reusable source that counts
    /// how often its result was taken (a pooled request slot is recycled only then).
    /// </summary>
    private sealed class CompletedSourceReplica(long size) : IReplicaTarget, System.Threading.Tasks.Sources.IValueTaskSource
    {
        private readonly MemoryBlockTarget _memory = new(size);
        private int _results;

        public int ResultsTaken => Volatile.Read(ref _results);

        public long Size => _memory.Size;

        public BlockTargetFeatures Features => _memory.Features;

        public BlockGeometry Geometry => _memory.Geometry;

        public ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken) => _memory.ReadAsync(offset, destination, cancellationToken);

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> source, BlockWriteFlags flags, CancellationToken cancellationToken) => new(this, 0);

        public ValueTask FlushAsync(CancellationToken cancellationToken) => _memory.FlushAsync(cancellationToken);

        public ValueTask TrimAsync(long offset, long length, CancellationToken cancellationToken) => _memory.TrimAsync(offset, length, cancellationToken);

        public ValueTask WriteZeroesAsync(long offset, long length, WriteZeroesFlags flags, CancellationToken cancellationToken) => _memory.WriteZeroesAsync(offset, length, flags, cancellationToken);

        public ValueTask<int> GetExtentsAsync(long offset, long length, Memory<BlockExtent> destination, CancellationToken cancellationToken) => _memory.GetExtentsAsync(offset, length, destination, cancellationToken);

        public void Grow(long newSizeBytes) => _memory.Resize(newSizeBytes);

        public long Epoch { get; set; }

        public void Dispose()
        {
        }

        void System.Threading.Tasks.Sources.IValueTaskSource.GetResult(short token) => Interlocked.Increment(ref _results);

        System.Threading.Tasks.Sources.ValueTaskSourceStatus System.Threading.Tasks.Sources.IValueTaskSource.GetStatus(short token)
            => System.Threading.Tasks.Sources.ValueTaskSourceStatus.Succeeded;

        void System.Threading.Tasks.Sources.IValueTaskSource.OnCompleted(
            Action<object?> continuation, object? state, short token, System.Threading.Tasks.Sources.ValueTaskSourceOnCompletedFlags flags)
            => continuation(state);
    }

    [Fact]
    public async Task A_write_that_completed_at_once_still_hands_its_result_back_to_the_replica()
    {
        // Regression: the controller returned early on IsCompletedSuccessfully without taking the
        // result, so a remote replica never recycled that request slot; after 32 such writes every
        // later one waited for a slot forever (remote 4K random writes hung).
        var replica = new CompletedSourceReplica(1 << 20);
        using var controller = Controller(replica);
        for (var i = 0; i < 100; i++)
        {
            await controller.WriteAsync(i * 4096L, new byte[4096], BlockWriteFlags.None, default);
        }

        Assert.Equal(100, replica.ResultsTaken);
    }

    [Fact]
    public async Task Ceiling_target_reads_zero_past_the_volume_and_refuses_writes_there()
    {
        var inner = new MemoryBlockTarget(8192);
        var data = new byte[8192];
        data.AsSpan().Fill(7);
        await inner.WriteAsync(0, data, BlockWriteFlags.None, default);
        var ceiling = new CeilingBlockTarget(inner, 1L << 40);
        Assert.Equal(1L << 40, ceiling.Size);

        var straddle = new byte[8192];
        straddle.AsSpan().Fill(0xFF);
        await ceiling.ReadAsync(4096, straddle, default);
        Assert.All(straddle.AsSpan(0, 4096).ToArray(), b => Assert.Equal(7, b));
        Assert.All(straddle.AsSpan(4096).ToArray(), b => Assert.Equal(0, b));

        var ex = await Assert.ThrowsAsync<BlockTargetException>(async () => await ceiling.WriteAsync(8192, new byte[4096], BlockWriteFlags.None, default));
        Assert.Equal(BlockError.OutOfRange, ex.Error);

        var extents = new BlockExtent[4];
        Assert.Equal(1, await ceiling.GetExtentsAsync(1 << 20, 4096, extents, default));
        Assert.Equal(ExtentFlags.Hole | ExtentFlags.Zero, extents[0].Flags);

        inner.Resize(16384);
        await ceiling.WriteAsync(8192, new byte[4096], BlockWriteFlags.None, default);
    }

    [Theory]
    [InlineData("a", true)]
    [InlineData("vol-1_x.y", true)]
    [InlineData("9lives", true)]
    [InlineData("", false)]
    [InlineData("-x", false)]
    [InlineData(".x", false)]
    [InlineData("a@b", false)]
    [InlineData("a/b", false)]
    [InlineData("a b", false)]
    [InlineData("ünïcode", false)]
    public void Volume_names(string name, bool valid) => Assert.Equal(valid, VolumeNames.IsValid(name));

    [Fact]
    public void Long_names_are_refused() => Assert.False(VolumeNames.IsValid(new string('a', VolumeNames.MaximumLength + 1)));

    [Fact]
    public void Snapshot_references_split_at_the_at_sign()
    {
        Assert.Equal(("vol", "snap"), VolumeNames.Split("vol@snap"));
        Assert.Equal(("vol", null), VolumeNames.Split("vol"));
    }

    [Fact]
    public void Daemon_options_parse_and_default()
    {
        var dev = SlabdOptions.Parse(["--dev", "--data-dir", "/d", "--run-dir=/r", "--api-port", "0"]);
        Assert.True(dev.Dev);
        Assert.Equal(["/d/dev-drive.img"], dev.Drives);
        Assert.Equal("/r/api.sock", dev.ApiSocketPath);
        Assert.Equal(0, dev.ApiPort);
        Assert.Equal(10809, dev.NbdPort);

        var drives = SlabdOptions.Parse(["--data-dir", "/d", "--run-dir", "/r", "--drive", "/dev/sdb", "--drive", "/dev/sdc"]);
        Assert.Equal(["/dev/sdb", "/dev/sdc"], drives.Drives);
        Assert.Throws<FormatException>(() => SlabdOptions.Parse(["--dev", "--wipe-drives=yes"]));
        Assert.Throws<FormatException>(() => SlabdOptions.Parse(["--dev", "--nbd-port", "70000"]));

        Assert.False(dev.KeepAttachments);
        Assert.True(SlabdOptions.Parse(["--dev", "--keep-attachments"]).KeepAttachments);
        Assert.Throws<FormatException>(() => SlabdOptions.Parse(["--dev", "--keep-attachments=120"]));
    }
}
