namespace Slab.Cli.Parsing;

/// <summary>
/// The command line is wrong (unknown command or flag, missing argument, bad value). Reported
/// with a usage hint and exit code 2, always before anything is sent to slabd.
/// </summary>
internal sealed class UsageException : Exception
{
    public UsageException(string message) : base(message)
    {
    }

    public UsageException()
    {
    }

    public UsageException(string message, Exception innerException) : base(message, innerException)
    {
    }
}
