extern alias cli;

using cli::Slab.Cli.Output;
using cli::Slab.Cli.Parsing;
using Xunit;

namespace Slab.Tests.Cli;

public sealed class CliSizeTests
{
    private const ulong MiB = 1UL << 20;
    private const ulong GiB = 1UL << 30;
    private const ulong TiB = 1UL << 40;

    [Theory]
    [InlineData("1", GiB)]
    [InlineData("10", 10 * GiB)]
    [InlineData("010", 10 * GiB)]
    [InlineData(" 10 ", 10 * GiB)]
    [InlineData("10G", 10 * GiB)]
    [InlineData("10g", 10 * GiB)]
    [InlineData("10GB", 10 * GiB)]
    [InlineData("10Gi", 10 * GiB)]
    [InlineData("10GiB", 10 * GiB)]
    [InlineData("10 GiB", 10 * GiB)]
    [InlineData("512M", 512 * MiB)]
    [InlineData("512MiB", 512 * MiB)]
    [InlineData("1M", MiB)]
    [InlineData("1T", TiB)]
    [InlineData("1TiB", TiB)]
    [InlineData("64T", 64 * TiB)]
    [InlineData("65536", 64 * TiB)]
    [InlineData("67108864M", 64 * TiB)]
    public void Valid_sizes(string text, ulong bytes)
    {
        Assert.True(SizeParser.TryParse(text, out var parsed, out var error), error);
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("", "a size is required")]
    [InlineData("0", "must be positive")]
    [InlineData("0G", "must be positive")]
    [InlineData("-1", "must be positive")]
    [InlineData("-10G", "must be positive")]
    [InlineData("abc", "must be a whole number")]
    [InlineData("G", "must be a whole number")]
    [InlineData("+5", "must be a whole number")]
    [InlineData("1.5", "fractional")]
    [InlineData("1.5G", "fractional")]
    [InlineData("1,5", "fractional")]
    [InlineData("10K", "unknown unit")]
    [InlineData("10P", "unknown unit")]
    [InlineData("10 apples", "unknown unit")]
    [InlineData("1e3", "unknown unit")]
    [InlineData("65T", "too large")]
    [InlineData("65537", "too large")]
    [InlineData("67108865M", "too large")]
    [InlineData("18446744073709551616", "too large")]
    [InlineData("99999999999999999999999999T", "too large")]
    public void Invalid_sizes_say_why(string text, string reason)
    {
        Assert.False(SizeParser.TryParse(text, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_whole_gib_up_to_the_maximum_round_trips_through_every_spelling()
    {
        var random = new Random(1234);
        for (var i = 0; i < 2000; i++)
        {
            var gib = (ulong)random.NextInt64(1, 64 * 1024 + 1);
            foreach (var suffix in new[] { "", "G", "g", "GB", "Gi", "GiB", "gib" })
            {
                Assert.True(SizeParser.TryParse(gib + suffix, out var bytes, out var error), error);
                Assert.Equal(gib * GiB, bytes);
            }
            Assert.True(SizeParser.TryParse(gib * 1024 + "M", out var viaMib, out _));
            Assert.Equal(gib * GiB, viaMib);
        }
    }

    [Fact]
    public void Anything_above_the_maximum_or_non_positive_is_refused()
    {
        var random = new Random(99);
        for (var i = 0; i < 2000; i++)
        {
            var gib = (ulong)random.NextInt64(64 * 1024 + 1, long.MaxValue / 2);
            Assert.False(SizeParser.TryParse(gib.ToString(System.Globalization.CultureInfo.InvariantCulture), out _, out var error));
            Assert.Contains("too large", error, StringComparison.Ordinal);
            var negative = -random.NextInt64(0, long.MaxValue);
            Assert.False(SizeParser.TryParse(negative.ToString(System.Globalization.CultureInfo.InvariantCulture), out _, out _));
        }
    }

    [Fact]
    public void Parse_throws_a_usage_error_naming_flag_and_value()
    {
        var ex = Assert.Throws<UsageException>(() => SizeParser.Parse("0"));
        Assert.Equal("invalid size \"0\" for --size: must be positive", ex.Message);
    }

    [Theory]
    [InlineData(0UL, "0 B")]
    [InlineData(1UL, "1 B")]
    [InlineData(1023UL, "1023 B")]
    [InlineData(1024UL, "1 KiB")]
    [InlineData(1536UL, "1.5 KiB")]
    [InlineData(MiB, "1 MiB")]
    [InlineData(512 * MiB, "512 MiB")]
    [InlineData(GiB, "1 GiB")]
    [InlineData(10 * GiB, "10 GiB")]
    [InlineData(GiB + GiB / 4, "1.25 GiB")]
    [InlineData(GiB - 1, "1 GiB")]
    [InlineData(TiB, "1 TiB")]
    [InlineData(64 * TiB, "64 TiB")]
    [InlineData(2048 * TiB, "2 PiB")]
    [InlineData(ulong.MaxValue, "16384 PiB")]
    public void Human_sizes(ulong bytes, string text)
    {
        Assert.Equal(text, Sizes.Format(bytes));
    }

    [Fact]
    public void Human_sizes_are_monotonic_and_within_a_percent()
    {
        var random = new Random(7);
        for (var i = 0; i < 5000; i++)
        {
            var bytes = (ulong)random.NextInt64(1, long.MaxValue) >> random.Next(0, 60);
            var text = Sizes.Format(bytes);
            var parts = text.Split(' ');
            var unit = Array.IndexOf(new[] { "B", "KiB", "MiB", "GiB", "TiB", "PiB" }, parts[1]);
            Assert.True(unit >= 0, text);
            var value = double.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(value < 1024 || unit == 5, text);
            var back = value * Math.Pow(1024, unit);
            Assert.True(Math.Abs(back - bytes) <= bytes * 0.01, $"{bytes} -> {text}");
        }
    }
}
