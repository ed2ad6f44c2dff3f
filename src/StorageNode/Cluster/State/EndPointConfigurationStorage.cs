using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Text;
using DotNext.Buffers;
using DotNext.Net.Cluster.Consensus.Raft.Membership;

namespace Slab.Cluster.State;

/// <summary>
/// The Raft membership (the voters' endpoints) persisted in one file of the data directory, so a
/// restarted node keeps the configuration the cluster committed (including replaced voters) rather
/// than the static peer list it was first started with. Addresses are IP endpoints, encoded as
/// length-prefixed UTF-8 "ip:port".
/// </summary>
internal sealed class EndPointConfigurationStorage(string fileName) : PersistentClusterConfigurationStorage<EndPoint>(fileName)
{
    protected override IEqualityComparer<EndPoint> Comparer => EqualityComparer<EndPoint>.Default;

    protected override void Encode(EndPoint address, ref BufferWriterSlim<byte> writer)
    {
        var text = address is IPEndPoint ip ? ip.ToString() : throw new ArgumentException($"Raft members must be IP endpoints, not {address}");
        Span<byte> length = stackalloc byte[sizeof(ushort)];
        var bytes = Encoding.UTF8.GetBytes(text);
        BinaryPrimitives.WriteUInt16LittleEndian(length, checked((ushort)bytes.Length));
        writer.Write(length);
        writer.Write(bytes);
    }

    protected override EndPoint Decode(ref SequenceReader reader)
    {
        var length = reader.ReadLittleEndian<ushort>();
        var bytes = new byte[length];
        reader.Read(bytes);
        return IPEndPoint.Parse(Encoding.UTF8.GetString(bytes));
    }
}
