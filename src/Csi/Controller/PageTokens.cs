namespace Slab.Csi.Controller;

/// <summary>
/// ListVolumes / ListSnapshots pagination. Entries are ordered by id; a token is the id of the first
/// entry of the next page, so a page boundary stays put when entries before it are deleted. A token
/// slab-csi cannot have made is ABORTED, as the spec says.
/// </summary>
internal static class PageTokens
{
    /// <summary>The page of <paramref name="ordered"/> (ordinal by id) starting at <paramref name="startingToken"/>, and the next token ("" at the end).</summary>
    public static (List<T> Page, string NextToken) Page<T>(IReadOnlyList<T> ordered, Func<T, string> idOf, string startingToken, int maxEntries)
    {
        if (maxEntries < 0)
            throw CsiException.InvalidArgument($"max_entries {maxEntries} must not be negative");
        if (startingToken.Length > 0 && !IsToken(startingToken))
            throw new CsiException(Grpc.Core.StatusCode.Aborted, $"starting_token '{startingToken}' is not one this plugin returned; list again from the start");

        var start = 0;
        if (startingToken.Length > 0)
        {
            while (start < ordered.Count && string.CompareOrdinal(idOf(ordered[start]), startingToken) < 0)
                start++;
        }

        var count = maxEntries == 0 ? ordered.Count - start : Math.Min(maxEntries, ordered.Count - start);
        var page = new List<T>(count);
        for (var i = start; i < start + count; i++)
            page.Add(ordered[i]);
        var next = start + count < ordered.Count ? idOf(ordered[start + count]) : "";
        return (page, next);
    }

    // Ids are slabd's 32-hex volume ids, or "VOLUMEID@SNAPSHOTID".
    private static bool IsToken(string token)
    {
        foreach (var c in token)
        {
            if (!char.IsAsciiHexDigitLower(c) && c != '@' && !char.IsAsciiDigit(c))
                return false;
        }

        return token.Length <= 256;
    }
}
