using Shouldly;
using Vserver.Api;
using Xunit;

namespace Vserver.Tests.Properties;

/// <summary>The sizes issue 19 found printed oddly (<c>-0M</c>, <c>8381903171.5G</c>, <c>1024K</c> for a size just
/// under 1M), at the edges where they came from.</summary>
public sealed class ByteSizeFormatTests
{
    [Theory]
    [InlineData(0L, "0M")]
    [InlineData(-1L, "0M")]                      // was -0M: a pool a few bytes short of empty
    [InlineData(-(1L << 20) + 1, "0M")]
    [InlineData(-(1L << 20), "-1M")]
    [InlineData(300L << 20, "300M")]
    [InlineData(1L << 30, "1.0G")]
    [InlineData(-(3L << 29), "-1.5G")]
    [InlineData((1L << 40) - 1, "1.0T")]          // not 1024.0G
    [InlineData(3L << 39, "1.5T")]
    [InlineData(long.MaxValue, "8388608.0T")]     // was 8589934592.0G
    [InlineData(long.MinValue, "-8388608.0T")]
    public void FormatRounded_never_shows_minus_zero_nor_billions_of_G(long bytes, string shown) => ByteSize.FormatRounded(bytes).ShouldBe(shown);

    [Theory]
    [InlineData(0L, "0")]
    [InlineData(1023L, "1023")]
    [InlineData(1024L, "1K")]
    [InlineData((1L << 20) - 1, "1M")]            // was 1024K
    [InlineData((1L << 30) - 1, "1G")]
    [InlineData(1536L, "1.5K")]
    [InlineData(-(1L << 20), "-1M")]
    [InlineData(long.MaxValue, "8388608T")]
    [InlineData(long.MinValue, "-8388608T")]
    public void Format_carries_into_the_next_unit(long bytes, string shown) => ByteSize.Format(bytes).ShouldBe(shown);

    [Theory]
    [InlineData("-0")]
    [InlineData("-1M")]
    [InlineData("99999999999999999999999999999T")]
    [InlineData("9223372036854775807")]
    [InlineData("1e9")]
    [InlineData("0x10")]
    [InlineData("1,5G")]
    [InlineData("5 M ")]
    [InlineData("５M")]                           // a full-width digit
    public void Odd_sizes_are_refused_with_one_line(string text)
    {
        ByteSize.TryParse(text, out var bytes, out var error).ShouldBeFalse();
        bytes.ShouldBe(0);
        error.ShouldStartWith($"invalid size '{text}': ");
        error.ShouldNotContain("\n");
    }
}
