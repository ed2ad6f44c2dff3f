using Slab.Api.V1;

namespace Slab.Cli.Output;

/// <summary>
/// A live progress bar for a resync or rebuild: redrawn in place on a terminal, else one line per
/// 10 % step so logs stay short.
/// </summary>
internal sealed class ProgressLine(TextWriter output)
{
    private const int BarWidth = 30;
    private readonly bool _redraw = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
    private int _lastStep = -1;
    private int _drawnLength;

    public void Show(string node, string state, ResyncProgress? progress)
    {
        var percent = progress?.Percent ?? 0;
        var filled = (int)Math.Round(percent / 100 * BarWidth);
        var detail = progress is null ? $"{state}, waiting for the copy to start" : VolumeViews.Progress(progress);
        var line = $"[{new string('#', filled)}{new string('.', BarWidth - filled)}] {node}: {detail}";
        if (_redraw)
        {
            output.Write("\r" + line.PadRight(_drawnLength));
            _drawnLength = line.Length;
            return;
        }

        var step = (int)(percent / 10);
        if (step != _lastStep)
        {
            _lastStep = step;
            output.WriteLine(line);
        }
    }

    public void Done(string message)
    {
        if (_redraw && _drawnLength > 0)
        {
            output.WriteLine();
        }

        output.WriteLine(message);
    }

}
