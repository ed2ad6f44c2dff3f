namespace Slab.Store;

/// <summary>
/// Striped shared/exclusive locks over 4 KiB blocks, keyed by block index modulo
/// <see cref="StripeCount"/>.
/// </summary>
/// <remarks>
/// <para>A read-modify-write of a partial block must not interleave with any other write of that
/// block, or it writes back stale bytes over the other write. So RMW writers take their blocks'
/// stripes <em>exclusive</em>; whole-block writers (aligned writes, hole punching, zero-range) take
/// them <em>shared</em> and run in parallel with each other.</para>
/// <para>Stripes are always taken in ascending stripe order, and a waiting exclusive locker blocks
/// new shared lockers of that stripe (no writer starvation); together this cannot deadlock. A range
/// of <see cref="StripeCount"/> blocks or more takes every stripe. Waits block the thread (Monitor),
/// they do not spin. Uncontended cost: one monitor enter/exit per stripe, no allocation.</para>
/// </remarks>
internal sealed class ReplicaFileStripeLock
{
    /// <summary>Number of stripes (a power of two).</summary>
    public const int StripeCount = 256;

    private readonly Stripe[] _stripes;

    public ReplicaFileStripeLock()
    {
        _stripes = new Stripe[StripeCount];
        for (var i = 0; i < _stripes.Length; i++)
        {
            _stripes[i] = new Stripe();
        }
    }

    /// <summary>Takes the stripes of blocks [firstBlock, firstBlock + blockCount) shared.</summary>
    public void EnterShared(long firstBlock, long blockCount)
    {
        Span(firstBlock, blockCount, out var lowStart, out var lowEnd, out var highStart, out var highEnd);
        for (var i = lowStart; i < lowEnd; i++)
        {
            _stripes[i].EnterShared();
        }

        for (var i = highStart; i < highEnd; i++)
        {
            _stripes[i].EnterShared();
        }
    }

    public void ExitShared(long firstBlock, long blockCount)
    {
        Span(firstBlock, blockCount, out var lowStart, out var lowEnd, out var highStart, out var highEnd);
        for (var i = lowStart; i < lowEnd; i++)
        {
            _stripes[i].ExitShared();
        }

        for (var i = highStart; i < highEnd; i++)
        {
            _stripes[i].ExitShared();
        }
    }

    /// <summary>Takes the stripes of blocks [firstBlock, firstBlock + blockCount) exclusive.</summary>
    public void EnterExclusive(long firstBlock, long blockCount)
    {
        Span(firstBlock, blockCount, out var lowStart, out var lowEnd, out var highStart, out var highEnd);
        for (var i = lowStart; i < lowEnd; i++)
        {
            _stripes[i].EnterExclusive();
        }

        for (var i = highStart; i < highEnd; i++)
        {
            _stripes[i].EnterExclusive();
        }
    }

    public void ExitExclusive(long firstBlock, long blockCount)
    {
        Span(firstBlock, blockCount, out var lowStart, out var lowEnd, out var highStart, out var highEnd);
        for (var i = lowStart; i < lowEnd; i++)
        {
            _stripes[i].ExitExclusive();
        }

        for (var i = highStart; i < highEnd; i++)
        {
            _stripes[i].ExitExclusive();
        }
    }

    /// <summary>
    /// The stripes of a block range as two ascending index ranges [lowStart, lowEnd) and
    /// [highStart, highEnd), low first, so iterating them in order is ascending.
    /// </summary>
    private static void Span(long firstBlock, long blockCount, out int lowStart, out int lowEnd, out int highStart, out int highEnd)
    {
        if (blockCount >= StripeCount)
        {
            lowStart = 0;
            lowEnd = StripeCount;
            highStart = highEnd = 0;
            return;
        }

        var first = (int)(firstBlock & (StripeCount - 1));
        var last = (int)((firstBlock + blockCount - 1) & (StripeCount - 1));
        if (blockCount <= 0)
        {
            lowStart = lowEnd = highStart = highEnd = 0;
        }
        else if (first <= last)
        {
            lowStart = first;
            lowEnd = last + 1;
            highStart = highEnd = 0;
        }
        else
        {
            // Wraps around: [0, last] then [first, StripeCount).
            lowStart = 0;
            lowEnd = last + 1;
            highStart = first;
            highEnd = StripeCount;
        }
    }

    private sealed class Stripe
    {
        private int _shared;
        private bool _exclusive;
        private int _exclusiveWaiters;

        public void EnterShared()
        {
            lock (this)
            {
                while (_exclusive || _exclusiveWaiters > 0)
                {
                    Monitor.Wait(this);
                }

                _shared++;
            }
        }

        public void ExitShared()
        {
            lock (this)
            {
                if (--_shared == 0 && _exclusiveWaiters > 0)
                {
                    Monitor.PulseAll(this);
                }
            }
        }

        public void EnterExclusive()
        {
            lock (this)
            {
                _exclusiveWaiters++;
                try
                {
                    while (_exclusive || _shared > 0)
                    {
                        Monitor.Wait(this);
                    }
                }
                finally
                {
                    _exclusiveWaiters--;
                }

                _exclusive = true;
            }
        }

        public void ExitExclusive()
        {
            lock (this)
            {
                _exclusive = false;
                Monitor.PulseAll(this);
            }
        }
    }
}
