using Slab.Block;
using Slab.Replication;
using Xunit;

namespace Slab.Tests.Replication;

/// <summary>The fencing gate: an epoch rises only after the requests admitted under the old one have left.</summary>
public sealed class EpochFencingTests : IAsyncLifetime
{
    private readonly PipeHarness _harness = new();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _harness.DisposeAsync();

    private static byte[] Block(byte value)
    {
        var data = new byte[4096];
        data.AsSpan().Fill(value);
        return data;
    }

    [Fact]
    public async Task An_old_epoch_write_admitted_before_the_raise_never_lands_after_the_new_controllers_write()
    {
        // The old controller's write is admitted and held inside the replica; the control plane then
        // raises the epoch and the new controller writes the same block. Without the drain, the new
        // write lands first and the old one overwrites it when released.
        var oldController = _harness.Client(epoch: 1);
        var newController = _harness.Client(epoch: 2);
        var first = 0;
        _harness.Probe.Gated = _ => Interlocked.Exchange(ref first, 1) == 0;

        var oldWrite = oldController.WriteAsync(0, Block(0xAA), BlockWriteFlags.None, default).AsTask();
        await _harness.Probe.WaitForRunningAsync(1);

        var raise = _harness.Resolver.RaiseEpochAsync(PipeHarness.Volume, 2);
        Assert.False(raise.IsCompleted, "the raise must wait for the admitted old-epoch write");

        var newWrite = newController.WriteAsync(0, Block(0xBB), BlockWriteFlags.None, default).AsTask();
        await _harness.Resolver.AdvanceRequested.Task; // the new write reached the replica and waits for the epoch
        Assert.False(newWrite.IsCompleted);

        _harness.Probe.OpenGate();
        await oldWrite;
        await raise;
        await newWrite;

        var data = new byte[4096];
        await _harness.Probe.Inner.ReadAsync(0, data, default);
        Assert.Equal(Block(0xBB), data);

        // After the raise the old controller is refused.
        var fenced = await Assert.ThrowsAsync<BlockTargetException>(() => oldController.WriteAsync(0, Block(0xCC), BlockWriteFlags.None, default).AsTask());
        Assert.Equal(BlockError.Fenced, fenced.Error);
        await _harness.Probe.Inner.ReadAsync(0, data, default);
        Assert.Equal(Block(0xBB), data);
    }

    [Fact]
    public async Task The_gate_refuses_older_epochs_from_the_moment_a_raise_starts_and_persists_before_admitting()
    {
        var gate = new EpochGate(3);
        Assert.Equal(EpochAdmission.Admitted, gate.TryEnter(3, out _));
        var persisted = new List<long>();
        var raise = gate.RaiseAsync(4, (e, _) => { persisted.Add(e); return Task.CompletedTask; }, default);

        Assert.False(raise.IsCompleted);
        Assert.Equal(EpochAdmission.Stale, gate.TryEnter(3, out var current));
        Assert.Equal(4, current);
        Assert.Equal(EpochAdmission.Ahead, gate.TryEnter(4, out _)); // not yet: the old request is in flight
        Assert.Empty(persisted);

        gate.Exit();
        await raise;
        Assert.Equal([4L], persisted);
        Assert.Equal(4, gate.Epoch);
        Assert.Equal(EpochAdmission.Admitted, gate.TryEnter(4, out _));
        gate.Exit();
        Assert.Equal(EpochAdmission.Ahead, gate.TryEnter(5, out _));
        Assert.Equal(0, gate.InFlight);
    }

    [Fact]
    public async Task A_raise_whose_persist_fails_keeps_old_epochs_refused_and_the_new_one_unadmitted()
    {
        var gate = new EpochGate(1);
        await Assert.ThrowsAsync<IOException>(() => gate.RaiseAsync(2, (_, _) => throw new IOException("disk gone"), default));
        Assert.Equal(EpochAdmission.Stale, gate.TryEnter(1, out _));
        Assert.Equal(EpochAdmission.Ahead, gate.TryEnter(2, out _));

        await gate.RaiseAsync(2, (_, _) => Task.CompletedTask, default);
        Assert.Equal(EpochAdmission.Admitted, gate.TryEnter(2, out _));
        gate.Exit();
    }
}
