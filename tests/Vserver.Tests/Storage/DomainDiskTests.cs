using HybridHypervisor.Domains;
using Shouldly;
using Xunit;
using Vserver.Isolation.Storage;

namespace Vserver.Tests.Storage;

public sealed class DomainDiskTests
{
    private const long MiB = 1024 * 1024;

    [Theory]
    [InlineData(0L, 32L * 1024 * 1024)]
    [InlineData(2_098_925L, 35L * 1024 * 1024)] // images/busybox: 2,098,925 bytes -> 35 MiB
    [InlineData(100L * 1024 * 1024, 162L * 1024 * 1024)]
    [InlineData(1L, 33L * 1024 * 1024)]
    public void Base_size_is_rootfs_times_1_3_plus_32_MiB_rounded_up_to_a_MiB(long rootfs, long expected)
    {
        var size = BaseDisk.SizeFor(rootfs);
        size.ShouldBe(expected);
        (size % MiB).ShouldBe(0);
        size.ShouldBeGreaterThanOrEqualTo(rootfs * 13 / 10 + 32 * MiB);
    }

    [Fact]
    public void Negative_rootfs_size_is_refused() =>
        Should.Throw<ArgumentOutOfRangeException>(() => BaseDisk.SizeFor(-1));

    [Fact]
    public void Inodes_follow_the_small_ratio_unless_the_tree_has_more_entries()
    {
        BaseDisk.InodesFor(35 * MiB, 308).ShouldBe(8960);
        BaseDisk.InodesFor(35 * MiB, 100_000).ShouldBe(100_000 + 25_000 + 64);
    }

    [Theory]
    [InlineData(32L * 1024 * 1024, "32M")]
    [InlineData(1L << 30, "1G")]
    [InlineData(3L << 40, "3T")]
    [InlineData(1536L * 1024, "1536K")]
    [InlineData(1000L, "1000")]
    [InlineData(0L, "0")]
    public void Sizes_are_shown_in_the_largest_exact_unit(long bytes, string expected) =>
        Vserver.Api.ByteSize.FormatExact(bytes).ShouldBe(expected);

    [Fact]
    public void Too_small_a_disk_gets_one_line_naming_the_image_and_the_size_to_give()
    {
        DomainDisk.CheckSize(32 * MiB, 41 * MiB, "busybox")
            .ShouldBe("disk 32M is smaller than image busybox needs (41M)");
    }

    [Fact]
    public void The_advised_size_is_rounded_up_so_it_is_always_enough()
    {
        var message = DomainDisk.CheckSize(1 * MiB, 35 * MiB + 1, "img");
        message.ShouldBe("disk 1M is smaller than image img needs (36M)");
        message!.ShouldNotContain("\n");
    }

    [Fact]
    public void A_disk_as_large_as_the_base_or_larger_is_accepted()
    {
        DomainDisk.CheckSize(35 * MiB, 35 * MiB, "busybox").ShouldBeNull();
        DomainDisk.CheckSize(1L << 30, 35 * MiB, "busybox").ShouldBeNull();
    }
}
