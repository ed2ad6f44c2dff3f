namespace Slab.Frontend.Nbd;

// The NBD frontend's public surface. It serves any Slab.Block.IBlockTarget handed out by an
// Slab.Block.IExportCatalog, and knows nothing of volumes or replicas.
//
//   NbdServerOptions        limits of one connection (this file)
//   NbdDefaults             well-known listen addresses (this file)
//   NbdSession              one client connection over an IDuplexPipe (NbdSession*.cs); usable
//                           without sockets (tests, benchmarks)
//   NbdSocketListener       accepts on unix sockets and TCP, runs an NbdSession per connection

/// <summary>
/// Limits of one NBD connection, and how many a listener serves. Immutable; one instance is shared by every session.
/// </summary>
public sealed record NbdServerOptions
{
    /// <summary>Largest request payload the protocol accepts, in bytes (2^25, the spec's interoperable maximum).</summary>
    public const int DefaultMaxRequestPayload = 32 * 1024 * 1024;

    /// <summary>
    /// Requests one connection may have in flight (parsed and not yet replied to). When all are in
    /// use the session stops reading from the connection until one completes, so memory per
    /// connection is bounded by this times <see cref="MaxRequestPayload"/>. Default 64; 1..4096.
    /// </summary>
    public int MaxInFlightPerConnection { get; init; } = 64;

    /// <summary>
    /// Largest WRITE payload and READ length in bytes (default 32 MiB). Advertised as the maximum
    /// block size (further capped by the target's geometry). A WRITE larger than this closes the
    /// connection; a larger READ fails with EINVAL. At most <see cref="Buffers.AlignedBufferPool.MaximumBufferSize"/>.
    /// </summary>
    public int MaxRequestPayload { get; init; } = DefaultMaxRequestPayload;

    /// <summary>
    /// Time from accepting a connection until it must have entered the transmission phase (NBD_OPT_GO
    /// or NBD_OPT_EXPORT_NAME), measured with the injected <see cref="TimeProvider"/>; after it the
    /// connection is closed. Default 10 s.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Connections one <see cref="NbdSocketListener"/> serves at once; a connection accepted beyond
    /// it is closed at once, with a logged warning. Default 1024; 1..65536.
    /// </summary>
    public int MaxConnections { get; init; } = 1024;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when a limit is outside its documented range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxInFlightPerConnection, 1, nameof(MaxInFlightPerConnection));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxInFlightPerConnection, 4096, nameof(MaxInFlightPerConnection));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxRequestPayload, 4096, nameof(MaxRequestPayload));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxRequestPayload, Buffers.AlignedBufferPool.MaximumBufferSize, nameof(MaxRequestPayload));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(HandshakeTimeout, TimeSpan.Zero, nameof(HandshakeTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConnections, 1, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxConnections, 65536, nameof(MaxConnections));
    }
}

/// <summary>Well-known NBD listen addresses of slabd (see the design's names and defaults).</summary>
public static class NbdDefaults
{
    /// <summary>The local unix socket.</summary>
    public const string UnixSocketPath = "/run/slab/nbd.sock";

    /// <summary>The IANA NBD port.</summary>
    public const int TcpPort = 10809;
}
