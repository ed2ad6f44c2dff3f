namespace Slab.Common;

/// <summary>Lock-free "raise to at least" for values that only grow (sizes, epochs).</summary>
public static class AtomicMax
{
    /// <summary>Sets <paramref name="location"/> to <paramref name="value"/> unless it already holds at least that; safe against concurrent raises.</summary>
    public static void Raise(ref long location, long value)
    {
        long current;
        do
        {
            current = Volatile.Read(ref location);
            if (value <= current)
            {
                return;
            }
        }
        while (Interlocked.CompareExchange(ref location, value, current) != current);
    }
}
