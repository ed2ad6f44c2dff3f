using Slab.Common;

namespace Slab.Hosting;

/// <summary>
/// An exclusive lock on <c>RUN/slabd.lock</c> (flock), so two daemons never share a run directory.
/// The kernel drops it when the process dies, so a crash never leaves it held.
/// </summary>
public sealed class RunDirectoryLock : IDisposable
{
    private readonly FileStream _stream;

    private RunDirectoryLock(FileStream stream) => _stream = stream;

    public static RunDirectoryLock Acquire(string runDirectory)
    {
        var path = Path.Combine(runDirectory, "slabd.lock");
        try
        {
            // FileShare.None takes flock(LOCK_EX | LOCK_NB) on Linux.
            var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            stream.SetLength(0);
            var pid = System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n");
            stream.Write(pid);
            stream.Flush();
            return new RunDirectoryLock(stream);
        }
        catch (IOException ex)
        {
            throw new SlabException(SlabErrorCode.FailedPrecondition, $"another slabd is running with run directory {runDirectory} ({ex.Message})", ex);
        }
    }

    public void Dispose() => _stream.Dispose();
}
