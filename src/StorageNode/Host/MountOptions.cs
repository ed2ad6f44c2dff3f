namespace Slab.Host;

/// <summary>Validation of mount(8) <c>-o</c> options that come from clients (slabctl, CSI, Docker).</summary>
public static class MountOptions
{
    /// <summary>At most this many options per mount.</summary>
    public const int MaxCount = 32;

    /// <summary>At most this many characters per option.</summary>
    public const int MaxLength = 256;

    /// <summary>
    /// Null when every option is one non-empty word of printable ASCII without spaces or commas (a
    /// comma would smuggle several options into one entry); else why not, for the caller to refuse.
    /// </summary>
    public static string? Validate(IReadOnlyList<string> options)
    {
        if (options.Count > MaxCount)
        {
            return $"at most {MaxCount} mount options are accepted, not {options.Count}";
        }

        foreach (var option in options)
        {
            if (option.Length is 0 or > MaxLength)
            {
                return $"mount option '{option}' must be 1 to {MaxLength} characters";
            }

            foreach (var c in option)
            {
                if (c is <= ' ' or > '~' or ',')
                {
                    return $"mount option '{option}' must be one option of printable characters without spaces or commas";
                }
            }
        }

        return null;
    }
}
