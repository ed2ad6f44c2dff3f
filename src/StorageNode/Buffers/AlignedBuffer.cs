using System.Buffers;
using System.Runtime.InteropServices;

namespace Slab.Buffers;

/// <summary>
/// Native memory aligned to <see cref="AlignedBufferPool.Alignment"/> bytes, never moved by the GC,
/// so it can be handed to O_DIRECT reads and writes as is. Rent from <see cref="AlignedBufferPool"/>
/// and return it there; the memory is freed when the pool drops it.
/// </summary>
public sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private byte* _pointer;

    internal AlignedBuffer(int capacity, AlignedBufferPool? owner)
    {
        Capacity = capacity;
        Owner = owner;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)capacity, AlignedBufferPool.Alignment);
    }

    /// <summary>Length in bytes, a multiple of the alignment.</summary>
    public int Capacity { get; }

    internal AlignedBufferPool? Owner { get; }

    /// <summary>Address of the first byte; valid until the buffer is freed.</summary>
    public byte* Pointer => _pointer;

    public override Span<byte> GetSpan() => new(_pointer, Capacity);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin()
    {
    }

    /// <summary>Returns the buffer to the pool it came from (or frees it).</summary>
    public void Return()
    {
        if (Owner is { } owner)
        {
            owner.Return(this);
        }
        else
        {
            Free();
        }
    }

    internal void Free()
    {
        var p = _pointer;
        _pointer = null;
        if (p != null)
        {
            NativeMemory.AlignedFree(p);
        }
    }

    protected override void Dispose(bool disposing) => Free();

    /// <summary>
    /// True when <paramref name="memory"/> starts on an alignment boundary of an aligned buffer and its
    /// length is a multiple of <paramref name="granularity"/>, so O_DIRECT can use it without a copy.
    /// </summary>
    public static bool IsDirectCapable(ReadOnlyMemory<byte> memory, int granularity)
    {
        if (memory.Length % granularity != 0)
        {
            return false;
        }

        if (MemoryMarshal.TryGetMemoryManager<byte, AlignedBuffer>(memory, out var manager, out var start, out _))
        {
            return start % granularity == 0 && manager._pointer != null;
        }

        return false;
    }
}
