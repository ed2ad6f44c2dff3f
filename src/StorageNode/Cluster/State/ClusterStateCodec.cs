using System.Buffers;
using System.Collections.Immutable;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace Slab.Cluster.State;

/// <summary>A command as it travels through the Raft log: the proposal id lets the proposer find its result.</summary>
public sealed record Proposal
{
    /// <summary>Unique per proposal (not per client request: retries get new proposal ids).</summary>
    public required Guid Id { get; init; }

    public required ClusterCommand Command { get; init; }
}

/// <summary>The encoded form is not one this node understands.</summary>
public sealed class ClusterStateFormatException(string message, Exception? innerException = null)
    : Exception(message, innerException);

/// <summary>
/// Versioned encodings of log entries (<see cref="Proposal"/>), results and whole-state snapshots:
/// a 4-byte magic, a 1-byte format version, then compact UTF-8 JSON (System.Text.Json source
/// generation). Encoding is deterministic: equal states give equal bytes (dictionaries are ordinal-ordered).
/// A reader refuses a newer format version instead of guessing.
/// </summary>
public static class ClusterStateCodec
{
    /// <summary>Format version written by this code.</summary>
    public const byte FormatVersion = 1;

    private static ReadOnlySpan<byte> StateMagic => "SLCS"u8;

    private static ReadOnlySpan<byte> ProposalMagic => "SLCP"u8;

    private static ReadOnlySpan<byte> ResultMagic => "SLCR"u8;

    public static byte[] EncodeState(ClusterState state) => Encode(StateMagic, state, ClusterStateJsonContext.Default.ClusterState);

    /// <summary>Writes the encoded state to <paramref name="writer"/>.</summary>
    public static void EncodeState(ClusterState state, IBufferWriter<byte> writer) =>
        Encode(StateMagic, state, ClusterStateJsonContext.Default.ClusterState, writer);

    /// <exception cref="ClusterStateFormatException">Not an encoded state, or a newer format.</exception>
    public static ClusterState DecodeState(ReadOnlySequence<byte> bytes) =>
        Decode(StateMagic, bytes, ClusterStateJsonContext.Default.ClusterState, "cluster state snapshot").WithRebuiltIndexes();

    public static ClusterState DecodeState(ReadOnlyMemory<byte> bytes) => DecodeState(new ReadOnlySequence<byte>(bytes));

    public static byte[] EncodeProposal(Proposal proposal) => Encode(ProposalMagic, proposal, ClusterStateJsonContext.Default.Proposal);

    /// <exception cref="ClusterStateFormatException">Not an encoded proposal, or a newer format.</exception>
    public static Proposal DecodeProposal(ReadOnlySequence<byte> bytes) =>
        Decode(ProposalMagic, bytes, ClusterStateJsonContext.Default.Proposal, "log entry");

    public static Proposal DecodeProposal(ReadOnlyMemory<byte> bytes) => DecodeProposal(new ReadOnlySequence<byte>(bytes));

    public static byte[] EncodeResult(CommandResult result) => Encode(ResultMagic, result, ClusterStateJsonContext.Default.CommandResult);

    public static CommandResult DecodeResult(ReadOnlyMemory<byte> bytes) =>
        Decode(ResultMagic, new ReadOnlySequence<byte>(bytes), ClusterStateJsonContext.Default.CommandResult, "command result");

    private static byte[] Encode<T>(ReadOnlySpan<byte> magic, T value, JsonTypeInfo<T> typeInfo)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Encode(magic, value, typeInfo, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    private static void Encode<T>(ReadOnlySpan<byte> magic, T value, JsonTypeInfo<T> typeInfo, IBufferWriter<byte> writer)
    {
        var header = writer.GetSpan(magic.Length + 1);
        magic.CopyTo(header);
        header[magic.Length] = FormatVersion;
        writer.Advance(magic.Length + 1);
        using var json = new Utf8JsonWriter(writer);
        JsonSerializer.Serialize(json, value, typeInfo);
    }

    private static T Decode<T>(ReadOnlySpan<byte> magic, ReadOnlySequence<byte> bytes, JsonTypeInfo<T> typeInfo, string what)
    {
        Span<byte> header = stackalloc byte[5];
        if (bytes.Length < header.Length)
        {
            throw new ClusterStateFormatException($"{what} is truncated ({bytes.Length} bytes)");
        }

        bytes.Slice(0, header.Length).CopyTo(header);
        if (!header[..4].SequenceEqual(magic))
        {
            throw new ClusterStateFormatException($"{what} does not start with {System.Text.Encoding.ASCII.GetString(magic)}; it is not Slab cluster data");
        }

        if (header[4] != FormatVersion)
        {
            throw new ClusterStateFormatException(
                $"{what} has format version {header[4]}, this node reads version {FormatVersion}; upgrade this node to the cluster's version");
        }

        try
        {
            var reader = new Utf8JsonReader(bytes.Slice(header.Length));
            return JsonSerializer.Deserialize(ref reader, typeInfo)
                ?? throw new ClusterStateFormatException($"{what} is empty");
        }
        catch (JsonException e)
        {
            throw new ClusterStateFormatException($"{what} is corrupt: {e.Message}", e);
        }
    }
}

/// <summary>Reads an ordinal-ordered immutable sorted dictionary, so decoded states iterate and encode like built ones.</summary>
public abstract class OrdinalSortedDictionaryConverter<TValue> : JsonConverter<ImmutableSortedDictionary<string, TValue>>
{
    public override ImmutableSortedDictionary<string, TValue> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            throw new JsonException("expected an object");
        }

        var valueInfo = (JsonTypeInfo<TValue>)options.GetTypeInfo(typeof(TValue));
        var builder = ImmutableSortedDictionary.CreateBuilder<string, TValue>(StringComparer.Ordinal);
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            var key = reader.GetString() ?? throw new JsonException("null key");
            reader.Read();
            builder[key] = JsonSerializer.Deserialize(ref reader, valueInfo)!;
        }

        return builder.ToImmutable();
    }

    public override void Write(Utf8JsonWriter writer, ImmutableSortedDictionary<string, TValue> value, JsonSerializerOptions options)
    {
        var valueInfo = (JsonTypeInfo<TValue>)options.GetTypeInfo(typeof(TValue));
        writer.WriteStartObject();
        foreach (var (key, item) in value.WithComparers(StringComparer.Ordinal))
        {
            writer.WritePropertyName(key);
            JsonSerializer.Serialize(writer, item, valueInfo);
        }

        writer.WriteEndObject();
    }
}

public sealed class OrdinalLabelsConverter : OrdinalSortedDictionaryConverter<string>;

public sealed class OrdinalNodesConverter : OrdinalSortedDictionaryConverter<NodeInfo>;

public sealed class OrdinalVolumesConverter : OrdinalSortedDictionaryConverter<VolumeInfo>;

[JsonSourceGenerationOptions(
    UseStringEnumConverter = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    Converters = [typeof(OrdinalLabelsConverter), typeof(OrdinalNodesConverter), typeof(OrdinalVolumesConverter)])]
[JsonSerializable(typeof(ClusterState))]
[JsonSerializable(typeof(Proposal))]
[JsonSerializable(typeof(CommandResult))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(WatchInfo))]
internal sealed partial class ClusterStateJsonContext : JsonSerializerContext;

/// <summary>What a voter tells a watching client besides the state: the leader and the voters.</summary>
internal sealed record WatchInfo
{
    public string? Leader { get; init; }

    public bool HasQuorum { get; init; }

    public long Revision { get; init; }

    public List<WatchMember> Members { get; init; } = [];
}

internal sealed record WatchMember(string MemberId, string RaftEndPoint, bool IsLeader, bool IsAvailable);
