using FsCheck;
using FsCheck.Fluent;
using SharedMemoryAccounting;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Memory;

public sealed class MemoryAccountingTests
{
    internal const string HostMeminfo = """
        MemTotal:       24682416 kB
        MemFree:        23627460 kB
        MemAvailable:   24119552 kB
        Buffers:           12048 kB
        Cached:           646356 kB
        SwapCached:            0 kB
        Active:           439516 kB
        Unevictable:       17824 kB
        SwapTotal:             0 kB
        AnonPages:         99152 kB
        Mapped:           127028 kB
        Shmem:             46816 kB
        Slab:             220284 kB
        SReclaimable:     182172 kB
        KernelStack:        2244 kB
        PageTables:         3800 kB
        VmallocTotal:   34359738367 kB
        VmallocUsed:       15004 kB
        Percpu:             2024 kB
        HugePages_Total:       0
        Hugepagesize:       2048 kB

        """;

    [Fact]
    public void Meminfo_is_parsed_in_bytes_with_counts_kept_as_counts()
    {
        var m = MemInfo.Parse(HostMeminfo);
        m.TotalBytes.ShouldBe(24682416L * 1024);
        m["HugePages_Total"].ShouldBe(0);
        m.Lines.Single(l => l.Key == "HugePages_Total").Kb.ShouldBeFalse();
        m.UsedBytes.ShouldBe((24682416L - 23627460) * 1024);
        m.UnmappedCacheBytes.ShouldBe((12048L + 646356 - 127028) * 1024);
        m.KernelBytes.ShouldBe((220284L + 2244 + 3800 + 2024 + 15004) * 1024);
        m["NoSuchField"].ShouldBe(0);
    }

    [Theory]
    [InlineData("")]
    [InlineData("MemFree: 1 kB\n")]
    [InlineData("MemTotal: lots kB\n")]
    public void Text_that_is_not_meminfo_is_refused(string text) =>
        Should.Throw<FormatException>(() => MemInfo.Parse(text));

    [Fact]
    public void Smaps_rollup_is_parsed_in_bytes()
    {
        var r = SmapsRollup.Parse("""
            55d0c0a3b000-7ffd4f5f6000 ---p 00000000 00:00 0                          [rollup]
            Rss:                1356 kB
            Pss:                 119 kB
            Pss_Anon:             60 kB
            Shared_Clean:       1232 kB
            Shared_Dirty:          0 kB
            Private_Clean:        24 kB
            Private_Dirty:       100 kB
            Swap:                  4 kB
            SwapPss:               4 kB
            """);
        r.ShouldBe(new SmapsRollup(1356 * 1024, 119 * 1024, 1232 * 1024, 0, 24 * 1024, 100 * 1024, 4 * 1024));
        r.Shared.ShouldBe(1232 * 1024);
        SmapsRollup.Parse("").ShouldBe(SmapsRollup.Zero);
    }

    [Fact]
    public void Cgroup_v1_and_v2_stats_mean_the_same_fields()
    {
        var v1 = CgroupMemory.FromStat(new Dictionary<string, long> { ["cache"] = 300, ["rss"] = 100, ["mapped_file"] = 120, ["shmem"] = 20, ["swap"] = 7 }, 450, 1000);
        var v2 = CgroupMemory.FromStat(new Dictionary<string, long> { ["file"] = 300, ["anon"] = 100, ["file_mapped"] = 120, ["shmem"] = 20, ["swap"] = 7 }, 450, 1000);
        v1.ShouldBe(v2);
        v1.UnmappedCache.ShouldBe(180);
        v1.Anon.ShouldBe(100);
    }

    [Fact]
    public void A_guests_meminfo_shows_its_limit_and_its_usage_in_the_hosts_format()
    {
        var host = MemInfo.Parse(HostMeminfo);
        var text = GuestMeminfo.Render(host, new CgroupMemory { Usage = 40L << 20, Cache = 10L << 20, Anon = 30L << 20, Shmem = 1L << 20 }, 128L << 20);
        var guest = MemInfo.Parse(text);
        guest.TotalBytes.ShouldBe(128L << 20);
        guest.FreeBytes.ShouldBe(88L << 20);
        guest["Cached"].ShouldBe(10L << 20);
        guest["AnonPages"].ShouldBe(30L << 20);
        guest["Slab"].ShouldBe(0, "the host's kernel memory is not the guest's");
        guest["VmallocTotal"].ShouldBe(host["VmallocTotal"]);
        guest.Lines.Select(l => l.Key).ShouldBe(host.Lines.Select(l => l.Key));
        text.ShouldStartWith("MemTotal:         131072 kB\n");
    }

    [Fact]
    public void An_unlimited_guest_sees_the_hosts_total()
    {
        var host = MemInfo.Parse(HostMeminfo);
        MemInfo.Parse(GuestMeminfo.Render(host, new CgroupMemory { Usage = 1 << 20 }, null)).TotalBytes.ShouldBe(host.TotalBytes);
        // A limit gives no RAM the host lacks.
        MemInfo.Parse(GuestMeminfo.Render(host, new CgroupMemory(), host.TotalBytes * 2)).TotalBytes.ShouldBe(host.TotalBytes);
        // Before any usage is known (the file vsinit binds at start): all of it free, nothing cached.
        var fresh = MemInfo.Parse(GuestMeminfo.Render(host, new CgroupMemory(), 64L << 20));
        fresh.FreeBytes.ShouldBe(64L << 20);
        fresh["Cached"].ShouldBe(0);
        fresh["Buffers"].ShouldBe(0);
    }

    /// <summary>The file is rewritten in place under a bind mount: its length must never change, whatever the numbers.</summary>
    [Fact]
    public void A_guests_meminfo_has_the_same_length_for_any_usage() =>
        Prop.ForAll(
            Gen.Choose(0, int.MaxValue).Select(n => (long)n * 16).ToArbitrary(),
            Gen.Choose(0, int.MaxValue).Select(n => (long)n * 16).ToArbitrary(),
            Gen.Choose(4, 1 << 20).Select(n => (long)n << 20).ToArbitrary(),
            (usage, cache, limit) =>
            {
                var host = MemInfo.Parse(HostMeminfo);
                var empty = GuestMeminfo.Render(host, new CgroupMemory(), null).Length;
                var text = GuestMeminfo.Render(host, new CgroupMemory { Usage = usage, Cache = cache, Anon = usage, ActiveFile = cache, InactiveFile = usage }, limit);
                return text.Length == empty;
            }).QuickCheckThrowOnFailure();

    private sealed class FakeReader(MemInfo before, MemInfo after, Dictionary<int, SmapsRollup> processes) : IMemoryReader
    {
        private int _reads;
        public MemInfo ReadMemInfo() => _reads++ == 0 ? before : after;
        public IReadOnlyList<int> ProcessIds() => processes.Keys.ToList();
        public SmapsRollup ReadRollup(int pid) => processes.GetValueOrDefault(pid) ?? SmapsRollup.Zero;
        public long KsmMergingPages(int pid) => 0;
        public KsmStatus ReadKsm() => new(false, false, 0, 0, 4096);
    }

    private static MemInfo Info(long totalMb, long freeMb, long cachedMb, long mappedMb, long slabMb) => MemInfo.Parse(
        $"MemTotal: {totalMb * 1024} kB\nMemFree: {freeMb * 1024} kB\nBuffers: 0 kB\nCached: {cachedMb * 1024} kB\nMapped: {mappedMb * 1024} kB\nSlab: {slabMb * 1024} kB\n");

    private static SmapsRollup Process(long rssMb, long pssMb) => new(rssMb << 20, pssMb << 20, (rssMb - pssMb) << 20, 0, pssMb << 20, 0, 0);

    [Fact]
    public void Shared_pages_are_split_between_guests_and_everything_adds_up_to_what_is_used()
    {
        // Two guests' processes map the same 20M binary (5M of Pss each after splitting it four ways); guest a's cgroup
        // was charged for the binary's cache because it touched it first. The host runs one 100M process.
        var info = Info(totalMb: 1000, freeMb: 700, cachedMb: 50, mappedMb: 20, slabMb: 30);
        var reader = new FakeReader(info, info, new()
        {
            [1] = Process(22, 7), [2] = Process(22, 7), [3] = Process(22, 7), [4] = Process(22, 7), [100] = Process(100, 100),
        });
        var a = new CgroupMemory { Usage = 28L << 20, Anon = 8L << 20, Cache = 20L << 20, CacheMapped = 20L << 20 };
        var b = new CgroupMemory { Usage = 8L << 20, Anon = 8L << 20 };
        var usage = Accounting.Measure(reader, [new GuestSample("a", [1, 2], a), new GuestSample("b", [3, 4], b)]);

        var ga = usage.PerGuest.Single(g => g.Name == "a");
        var gb = usage.PerGuest.Single(g => g.Name == "b");
        ga.Fair.ShouldBe(gb.Fair, "the shared binary is split, not charged to whoever touched it first");
        ga.Charged!.Value.ShouldBeGreaterThan(gb.Charged!.Value);
        ga.Fair.ShouldBe(14L << 20);
        ga.Rss.ShouldBe(44L << 20);
        usage.SharedSavings.ShouldBe((88L - 28) << 20);
        // Host: its process (100M), the cache nobody maps (50 - 20 = 30M), the kernel's slab (30M).
        usage.HostOwn.ShouldBe(160L << 20);
        usage.Used.ShouldBe(300L << 20);
        usage.Unaccounted.ShouldBe((300L - 28 - 160) << 20);
    }

    [Fact]
    public void Cache_a_guest_alone_holds_is_its_own_and_not_the_hosts()
    {
        var info = Info(totalMb: 1000, freeMb: 800, cachedMb: 100, mappedMb: 0, slabMb: 0);
        var reader = new FakeReader(info, info, new() { [1] = Process(10, 10) });
        var guest = new CgroupMemory { Usage = 70L << 20, Anon = 10L << 20, Cache = 60L << 20 };
        var usage = Accounting.Measure(reader, [new GuestSample("g", [1], guest)]);
        usage.PerGuest[0].Fair.ShouldBe(70L << 20);
        usage.PerGuest[0].Private.ShouldBe(70L << 20);
        usage.HostOwn.ShouldBe(40L << 20, "the 40M of cache no guest is charged for");
        usage.Unaccounted.ShouldBe(90L << 20);
    }

    [Fact]
    public void Memory_moving_during_the_walk_widens_the_tolerance()
    {
        var reader = new FakeReader(Info(1000, 700, 0, 0, 0), Info(1000, 500, 0, 0, 0), new());
        var usage = Accounting.Measure(reader, []);
        usage.Used.ShouldBe(400L << 20);
        usage.Tolerance.ShouldBe(PoolUsage.FixedAllowance + (1000L << 20) / 200 + (200L << 20));
    }
}
