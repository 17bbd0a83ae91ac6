using System.Buffers.Binary;
using Shouldly;
using Vserver.Isolation.Storage;
using Xunit;

namespace Vserver.Tests.Storage;

/// <summary>A vserver's disk quota: the sizes it may have, the minimum an image asks for, grow only, the ext4 superblock.</summary>
public sealed class LayerImageTests
{
    private const long K = 1L << 10;
    private const long M = 1L << 20;
    private const long G = 1L << 30;

    [Theory]
    [InlineData(16 * M)]
    [InlineData(64 * M)]
    [InlineData(2 * G)]
    [InlineData(16L << 40)]
    public void Whole_MiB_quotas_from_16M_to_16T_are_accepted(long bytes) => LayerImage.QuotaMessage(bytes).ShouldBeNull();

    [Theory]
    [InlineData(8 * M, "disk quota 8M is below the minimum of 16M (an ext4 of less has little room beside its journal and tables)")]
    [InlineData(0L, "disk quota 0 bytes is below the minimum of 16M")]
    [InlineData(64 * M + 1, "disk quota 67108865 bytes is not a whole number of MiB")]
    [InlineData((16L << 40) + M, "disk quota 16777217M is above the maximum of 16T")]
    public void Other_quotas_are_refused_with_one_line_saying_which_rule(long bytes, string message)
    {
        var error = LayerImage.QuotaMessage(bytes).ShouldNotBeNull();
        error.ShouldStartWith(message);
        error.ShouldNotContain('\n');
    }

    [Theory]
    [InlineData(16 * M, 11408 * K)]
    [InlineData(32 * M, 26944 * K)]
    [InlineData(64 * M, 58016 * K)]
    [InlineData(128 * M, 107872 * K)]
    [InlineData(1 * G, 963988 * K)]
    [InlineData(2 * G, 1943376 * K)]
    public void The_usable_estimate_is_never_above_what_df_shows_free_and_close_below_it(long size, long measuredAvailable)
    {
        // measuredAvailable: df's "Available" of a fresh image made as LayerImage.Create makes it (mke2fs 1.47.0).
        var estimate = LayerImage.UsableBytes(size);
        estimate.ShouldBeLessThanOrEqualTo(measuredAvailable);
        (measuredAvailable - estimate).ShouldBeLessThan(3 * M / 2 + measuredAvailable / 100);
    }

    [Theory]
    [InlineData(16 * M, 4 * M)]
    [InlineData(128 * M - 4 * K, 4 * M)]
    [InlineData(128 * M, 16 * M)]
    [InlineData(1 * G, 32 * M)]
    [InlineData(2 * G, 64 * M)]
    [InlineData(64 * G, 512 * M)]
    [InlineData(1L << 40, 1 * G)]
    public void The_journal_is_the_one_mke2fs_gives(long size, long journal) => LayerImage.JournalBytes(size).ShouldBe(journal);

    [Theory]
    [InlineData(0L)]
    [InlineData(1_984_139L)] // images/busybox
    [InlineData(9 * M)]
    [InlineData(10 * M)]
    [InlineData(200 * M)]
    [InlineData(117 * M + 12_345)]
    [InlineData(3 * G)]
    public void The_minimum_is_the_smallest_whole_MiB_that_holds_the_image_once_more(long imageBytes)
    {
        var minimum = LayerImage.MinimumFor(imageBytes);
        (minimum % M).ShouldBe(0);
        minimum.ShouldBeGreaterThanOrEqualTo(LayerImage.MinimumBytes);
        var need = imageBytes + imageBytes / 10;
        LayerImage.UsableBytes(minimum).ShouldBeGreaterThanOrEqualTo(need);
        if (minimum > LayerImage.MinimumBytes) LayerImage.UsableBytes(minimum - M).ShouldBeLessThan(need);
        LayerImage.ImageFitMessage(minimum, imageBytes, "img").ShouldBeNull();
        LayerImage.QuotaMessage(minimum).ShouldBeNull();
    }

    [Fact]
    public void A_busybox_guest_needs_only_the_16M_floor() => LayerImage.MinimumFor(1_984_139).ShouldBe(16 * M);

    [Fact]
    public void A_quota_too_small_for_its_image_is_refused_with_the_size_it_takes()
    {
        var minimum = LayerImage.MinimumFor(200 * M);
        var error = LayerImage.ImageFitMessage(64 * M, 200 * M, "debian").ShouldNotBeNull();
        error.ShouldBe($"disk quota 64M is too small for image debian: the layer must hold a rewrite of its 200M of files beside " +
                       $"the ext4's journal and tables, which takes {minimum >> 20}M");
        LayerImage.ImageFitMessage(minimum - M, 200 * M, "debian").ShouldNotBeNull();
    }

    [Fact]
    public void A_quota_only_grows()
    {
        LayerImage.GrowError("web1", 128 * M, 64 * M)
            .ShouldBe("the disk quota of 'web1' is 128M; shrinking it to 64M is refused (an ext4 layer only grows)");
        LayerImage.GrowError("web1", 128 * M, 128 * M).ShouldBeNull();
        LayerImage.GrowError("web1", 128 * M, 2 * G).ShouldBeNull();
    }

    private static byte[] Superblock(uint blocksLo, uint logBlockSize, bool is64Bit = false, uint blocksHi = 0, ushort magic = 0xEF53)
    {
        var sb = new byte[1024];
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x4), blocksLo);
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x18), logBlockSize);
        BinaryPrimitives.WriteUInt16LittleEndian(sb.AsSpan(0x38), magic);
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x60), is64Bit ? 0x80u | 0x2u : 0x2u);
        BinaryPrimitives.WriteUInt32LittleEndian(sb.AsSpan(0x150), blocksHi);
        return sb;
    }

    [Fact]
    public void The_filesystem_size_comes_from_the_superblock()
    {
        LayerImage.FilesystemBytes(Superblock(16384, 2)).ShouldBe(64 * M);
        LayerImage.FilesystemBytes(Superblock(65536, 0)).ShouldBe(64 * M);
        // The high half of the block count counts only with the 64bit feature.
        LayerImage.FilesystemBytes(Superblock(0, 2, is64Bit: true, blocksHi: 1)).ShouldBe((1L << 32) * 4096);
        LayerImage.FilesystemBytes(Superblock(0, 2, is64Bit: false, blocksHi: 1)).ShouldBe(0);
        LayerImage.FilesystemBytes(Superblock(16384, 2, magic: 0x1234)).ShouldBeNull();
        LayerImage.FilesystemBytes(new byte[100]).ShouldBeNull();
    }

    [Theory]
    [InlineData("CapEff:\t000001ffffffffff", true)]
    [InlineData("CapEff:\t000001fffeffffff", false)] // this project's containers: all but CAP_SYS_RESOURCE
    [InlineData("CapEff:\t0000000001000000", true)]
    [InlineData("CapEff:\t0000000000000000", false)]
    [InlineData("CapPrm:\t000001ffffffffff", false)]
    public void Growing_online_needs_CAP_SYS_RESOURCE_in_the_effective_set(string line, bool can) =>
        LayerImage.HasCapability($"Name:\tvserverd\n{line}\nCapBnd:\t000001ffffffffff\n", 24).ShouldBe(can);
}
