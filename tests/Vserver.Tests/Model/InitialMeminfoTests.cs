using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Model;

/// <summary>What a vserver's /proc/meminfo and free(1) show from its start until the agent rewrites the file.</summary>
public sealed class InitialMeminfoTests
{
    private const string Host = """
        MemTotal:       24682416 kB
        MemFree:        23099156 kB
        MemAvailable:   23761044 kB
        Buffers:           10684 kB
        Cached:           925180 kB
        SwapCached:            0 kB
        Active:           511332 kB
        SwapTotal:       1048572 kB
        SwapFree:        1048572 kB
        Shmem:            155384 kB
        SReclaimable:     182976 kB
        HugePages_Total:       0
        Hugepagesize:       2048 kB

        """;

    [Fact]
    public void The_limit_is_the_total_and_all_of_it_is_free()
    {
        string text = VserverDriver.InitialMeminfo(256L << 20, Host);

        text.ShouldStartWith("MemTotal:         262144 kB\nMemFree:          262144 kB\nMemAvailable:     262144 kB\n");
        // free(1) takes buffers, cache and shared memory from the total besides MemFree: the host's would not fit.
        foreach (string key in new[] { "Buffers", "Cached", "Shmem", "SReclaimable" })
        {
            HostMemory.Field(text, key).ShouldBe(0, key);
        }

        // The rest is the host's, in the kernel's layout, line for line.
        text.ShouldContain("\nSwapTotal:       1048572 kB\nSwapFree:        1048572 kB\n");
        text.ShouldContain("\nHugePages_Total:       0\nHugepagesize:       2048 kB\n");
        text.Split('\n').Length.ShouldBe(Host.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length + 1);
        text.ShouldEndWith("kB\n");
    }

    [Fact]
    public void Without_a_limit_or_above_the_hosts_ram_the_total_is_the_hosts()
    {
        HostMemory.Field(VserverDriver.InitialMeminfo(null, Host), "MemTotal").ShouldBe(24682416L * 1024);
        HostMemory.Field(VserverDriver.InitialMeminfo(1L << 40, Host), "MemFree").ShouldBe(24682416L * 1024);
        // A limit that is no whole number of KiB is rounded down.
        HostMemory.Field(VserverDriver.InitialMeminfo((100L << 20) + 1000, Host), "MemTotal").ShouldBe(100L << 20);
    }
}
