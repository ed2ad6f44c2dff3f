using Slab.Cli.Connection;

namespace Slab.Cli.Parsing;

/// <summary>What a command handler gets: its parsed arguments, the output writers and the API.</summary>
internal sealed class CommandContext
{
    private readonly Func<ApiConnection> _connect;
    private ApiConnection? _api;

    public CommandContext(ParseResult parse, TextWriter stdout, TextWriter stderr, Func<ApiConnection> connect)
    {
        Parse = parse;
        Out = stdout;
        Error = stderr;
        _connect = connect;
    }

    public ParseResult Parse { get; }

    public TextWriter Out { get; }

    public TextWriter Error { get; }

    public bool Json => Parse.IsSet(GlobalFlags.Json.Name);

    /// <summary>The connection to slabd; opened on first use, so handlers validate input first.</summary>
    public ApiConnection Api => _api ??= _connect();

    public string Arg(int index) => Parse.Arguments[index];

    public IReadOnlyList<string> Args => Parse.Arguments;

    public string? Flag(string name) => Parse.Value(name);

    public IReadOnlyList<string> Flags(string name) => Parse.Values(name);

    /// <summary>A flag that names something: must not be blank. The server validates the rest.</summary>
    public string RequireName(string flag) =>
        OptionalName(flag) ?? throw new UsageException($"--{flag} must not be empty");

    /// <summary>A flag that names something, or null when it is not given; given, it must not be blank.</summary>
    public string? OptionalName(string flag)
    {
        if (Flag(flag) is not { } value)
            return null;
        var name = value.Trim();
        return name.Length > 0 ? name : throw new UsageException($"--{flag} must not be empty");
    }

    /// <summary>A list flag of names (<c>--nodes a,b</c>); empty when not given, no name may be blank.</summary>
    public List<string> NameList(string flag) => CommaList.Names(Flags(flag), flag);
}
