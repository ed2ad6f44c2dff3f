extern alias cli;

using cli::Slab.Cli.Commands;
using cli::Slab.Cli.Parsing;
using Xunit;

namespace Slab.Tests.Cli;

public sealed class CliParserTests
{
    private static ParseResult Parse(string commandLine) => Parser.Parse(CommandTree.Build(), CliRunner.Split(commandLine));

    [Theory]
    [InlineData("volume create v --size 10", "slabctl volume create")]
    [InlineData("v c v -s 10", "slabctl volume create")]
    [InlineData("v l", "slabctl volume list")]
    [InlineData("volume i a b", "slabctl volume inspect")]
    [InlineData("v d a", "slabctl volume delete")]
    [InlineData("v snap c a --name s", "slabctl volume snapshot create")]
    [InlineData("volume snapshot l a", "slabctl volume snapshot list")]
    [InlineData("v snapshot d a --name s", "slabctl volume snapshot delete")]
    [InlineData("v clone a@s --name b", "slabctl volume clone")]
    [InlineData("v restore a --snapshot s", "slabctl volume restore")]
    [InlineData("v update a --size 20", "slabctl volume update")]
    [InlineData("host attach a", "slabctl host attach")]
    [InlineData("host mount a /mnt/x", "slabctl host mount")]
    [InlineData("service pool show", "slabctl service pool show")]
    [InlineData("service kvdb members", "slabctl service kvdb members")]
    [InlineData("service kvdb add-member --node n4", "slabctl service kvdb add-member")]
    [InlineData("service kvdb remove-member --node n3", "slabctl service kvdb remove-member")]
    [InlineData("service maintenance --enter", "slabctl service maintenance")]
    [InlineData("service maintenance --exit --node n2", "slabctl service maintenance")]
    [InlineData("cluster list", "slabctl cluster list")]
    [InlineData("cluster ls", "slabctl cluster list")]
    [InlineData("cluster inspect", "slabctl cluster inspect")]
    [InlineData("cluster i n2", "slabctl cluster inspect")]
    [InlineData("cluster delete n4", "slabctl cluster delete")]
    [InlineData("cluster decommission n4", "slabctl cluster delete")]
    [InlineData("status", "slabctl status")]
    public void Names_and_aliases_select_the_command(string commandLine, string path)
    {
        var result = Parse(commandLine);
        Assert.Null(result.Error);
        Assert.Equal(path, result.Command.Path);
        Assert.NotNull(result.Command.Handler);
    }

    [Theory]
    [InlineData("volume create v --size 10 --repl 2 --fs xfs --io_priority high")]
    [InlineData("volume create v --size=10 --repl=2 --fs=xfs --io_priority=high")]
    [InlineData("volume create v -s 10 -r 2 --fs XFS --io_priority HIGH")]
    [InlineData("volume create v -s10 -r2 --fs xfs --io_priority high")]
    [InlineData("volume create v -s=10 -r=2 --fs xfs --io_priority high")]
    public void Flag_forms_are_equivalent(string commandLine)
    {
        var result = Parse(commandLine);
        Assert.Null(result.Error);
        Assert.Equal(["v"], result.Arguments);
        Assert.Equal("10", result.Value("size"));
        Assert.Equal("2", result.Value("repl"));
        Assert.Equal("xfs", result.Value("fs"));
        Assert.Equal("high", result.Value("io_priority"));
    }

    [Fact]
    public void Flags_may_follow_or_precede_arguments_and_globals_go_anywhere()
    {
        var result = Parse("-j --endpoint localhost:9501 volume --json create --size 10 v");
        Assert.Null(result.Error);
        Assert.True(result.IsSet("json"));
        Assert.Equal("localhost:9501", result.Value("endpoint"));
        Assert.Equal(["v"], result.Arguments);
    }

    [Fact]
    public void Combined_short_switches_and_json_false()
    {
        Assert.True(Parse("v l -j").IsSet("json"));
        Assert.False(Parse("v l -j --json=false").IsSet("json"));
        Assert.Equal("invalid value \"maybe\" for --json: must be true or false", Parse("v l --json=maybe").Error);
    }

    [Fact]
    public void Labels_repeat_and_last_value_wins_for_other_flags()
    {
        var result = Parse("v c v -s 1 -s 2 -l a=1 --label b=2,c=3");
        Assert.Null(result.Error);
        Assert.Equal("2", result.Value("size"));
        Assert.Equal(["a=1", "b=2,c=3"], result.Values("label"));
    }

    [Fact]
    public void Double_dash_ends_flags()
    {
        var result = Parse("v i -- -weird-name");
        Assert.Null(result.Error);
        Assert.Equal(["-weird-name"], result.Arguments);
    }

    [Theory]
    [InlineData("-h", "slabctl")]
    [InlineData("volume --help", "slabctl volume")]
    [InlineData("v c -h", "slabctl volume create")]
    [InlineData("v c --bogus -h", "slabctl volume create")]
    [InlineData("v snap --help", "slabctl volume snapshot")]
    [InlineData("service pool -h", "slabctl service pool")]
    public void Help_wins_wherever_it_appears(string commandLine, string path)
    {
        var result = Parse(commandLine);
        Assert.True(result.HelpRequested);
        Assert.Null(result.Error);
        Assert.Equal(path, result.Command.Path);
    }

    [Theory]
    [InlineData("bogus", "unknown command \"bogus\" for \"slabctl\"")]
    [InlineData("volume bogus", "unknown command \"bogus\" for \"slabctl volume\"")]
    [InlineData("v c v --size 10 --bogus", "unknown flag: --bogus")]
    [InlineData("--fs xfs volume create v --size 10", "unknown flag: --fs")]
    [InlineData("v c v --size 10 -x", "unknown shorthand flag: 'x' in -x")]
    [InlineData("v c v --size", "flag needs an argument: --size")]
    [InlineData("v c v -s", "flag needs an argument: 's' in -s")]
    [InlineData("v c v --size --json", "flag needs an argument: --size")]
    [InlineData("v c v --size=", "empty value for --size")]
    [InlineData("v c --size 10", "missing argument NAME")]
    [InlineData("v c v", "required flag --size not set")]
    [InlineData("v c a b --size 10", "unexpected argument \"b\"")]
    [InlineData("v c v --size 10 --fs btrfs", "invalid value \"btrfs\" for --fs: must be one of ext4, xfs, none")]
    [InlineData("v c v --size 10 --io_priority urgent", "invalid value \"urgent\" for --io_priority: must be one of high, medium, low")]
    [InlineData("v i", "missing argument NAME")]
    [InlineData("v snap c v", "required flag --name not set")]
    [InlineData("v clone a", "required flag --name not set")]
    [InlineData("v restore a", "required flag --snapshot not set")]
    [InlineData("host mount a", "missing argument PATH")]
    [InlineData("host attach", "missing argument VOLUME")]
    [InlineData("status extra", "unexpected argument \"extra\"")]
    [InlineData("cluster delete", "missing argument NODE")]
    [InlineData("cluster inspect a b", "unexpected argument \"b\"")]
    [InlineData("service kvdb add-member", "required flag --node not set")]
    [InlineData("service kvdb add-member n4", "unexpected argument \"n4\"")]
    [InlineData("service maintenance", "one of --enter or --exit is required")]
    [InlineData("service maintenance --node n2", "one of --enter or --exit is required")]
    [InlineData("service maintenance --enter --exit", "only one of --enter or --exit may be given")]
    public void Bad_command_lines_name_the_problem(string commandLine, string error)
    {
        Assert.Equal(error, Parse(commandLine).Error);
    }

    [Fact]
    public void Exactly_one_of_counts_only_switches_that_are_on()
    {
        var result = Parse("service maintenance --enter --exit=false");
        Assert.Null(result.Error);
        Assert.True(result.IsSet("enter"));
        Assert.Contains("--enter|--exit", result.Command.UsageLine, StringComparison.Ordinal);
    }

    [Fact]
    public void Blank_positional_is_rejected()
    {
        var result = Parser.Parse(CommandTree.Build(), ["volume", "delete", "  "]);
        Assert.Equal("NAME must not be empty", result.Error);
    }

    [Fact]
    public void Every_command_has_a_summary_and_unique_names()
    {
        static IEnumerable<CommandNode> All(CommandNode node) => node.Children.SelectMany(All).Prepend(node);
        foreach (var node in All(CommandTree.Build()))
        {
            Assert.False(string.IsNullOrWhiteSpace(node.Summary), node.Path);
            var names = node.Children.SelectMany(c => c.Aliases.Prepend(c.Name)).ToList();
            Assert.Equal(names.Count, names.Distinct().Count());
            Assert.True(node.Children.Count > 0 ^ node.Handler is not null, node.Path);
            var flags = node.Flags.Concat(GlobalFlags.All).ToList();
            Assert.Equal(flags.Count, flags.Select(f => f.Name).Distinct().Count());
            var shorts = flags.Where(f => f.Short is not null).Select(f => f.Short).ToList();
            Assert.Equal(shorts.Count, shorts.Distinct().Count());
            Assert.All(node.ExactlyOneOf, name => Assert.Contains(node.Flags, f => f.Name == name && !f.Required));
        }
    }
}
