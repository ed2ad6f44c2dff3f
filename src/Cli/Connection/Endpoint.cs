using System.Globalization;

namespace Slab.Cli.Connection;

/// <summary>
/// Where slabd's gRPC API listens: a unix socket path, or an http(s) base address for TCP.
/// <see cref="Original"/> is what the user gave, used in messages.
/// </summary>
internal sealed record Endpoint(string Original, string? SocketPath, Uri? Address)
{
    public bool IsUnixSocket => SocketPath is not null;

    /// <summary>
    /// Accepts <c>unix:///abs/path</c>, <c>unix:path</c>, an absolute path, <c>tcp://host:port</c>,
    /// <c>http://host:port</c>, <c>https://host:port</c> and <c>host:port</c> (IPv6 as <c>[::1]:port</c>).
    /// </summary>
    public static bool TryParse(string? text, out Endpoint endpoint, out string error)
    {
        endpoint = null!;
        error = "";
        var s = (text ?? "").Trim();
        if (s.Length == 0)
        {
            error = "the endpoint is empty";
            return false;
        }

        if (s.StartsWith("unix:", StringComparison.OrdinalIgnoreCase))
        {
            var path = s["unix:".Length..];
            // unix:///run/x.sock and unix:/run/x.sock are absolute; unix://host/... is not a thing.
            if (path.StartsWith("//", StringComparison.Ordinal))
                path = path[2..];
            if (path.Length == 0)
            {
                error = "the unix socket path is empty";
                return false;
            }
            endpoint = new Endpoint(s, path, null);
            return true;
        }
        if (s.StartsWith('/'))
        {
            endpoint = new Endpoint(s, s, null);
            return true;
        }

        string scheme = "http";
        var rest = s;
        var sep = s.IndexOf("://", StringComparison.Ordinal);
        if (sep >= 0)
        {
            scheme = s[..sep].ToLowerInvariant();
            rest = s[(sep + 3)..];
            switch (scheme)
            {
                case "tcp":
                case "http":
                    scheme = "http";
                    break;
                case "https":
                    break;
                default:
                    error = $"unsupported scheme \"{s[..sep]}\" (use unix://, tcp://, http:// or https://)";
                    return false;
            }
        }
        rest = rest.TrimEnd('/');
        if (!TrySplitHostPort(rest, out var host, out var port, out error))
            return false;
        endpoint = new Endpoint(s, null, new Uri($"{scheme}://{host}:{port.ToString(CultureInfo.InvariantCulture)}"));
        return true;
    }

    private static bool TrySplitHostPort(string text, out string host, out int port, out string error)
    {
        host = "";
        port = 0;
        error = "";
        int colon;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || close + 1 >= text.Length || text[close + 1] != ':')
            {
                error = "expected [ipv6]:port";
                return false;
            }
            colon = close + 1;
        }
        else
        {
            colon = text.LastIndexOf(':');
            if (colon < 0)
            {
                error = "expected host:port";
                return false;
            }
            if (text.IndexOf(':', StringComparison.Ordinal) != colon)
            {
                error = "IPv6 addresses must be written as [addr]:port";
                return false;
            }
        }
        host = text[..colon];
        var portText = text[(colon + 1)..];
        if (host.Length == 0 || host.Contains('/', StringComparison.Ordinal) || Uri.CheckHostName(host.Trim('[', ']')) == UriHostNameType.Unknown)
        {
            error = $"invalid host \"{host}\"";
            return false;
        }
        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535)
        {
            error = $"invalid port \"{portText}\" (1-65535)";
            return false;
        }
        return true;
    }
}
