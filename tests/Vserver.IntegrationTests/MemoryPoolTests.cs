using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>The shared memory pool seen from vsctl: fair shares, the host's sum, admission, a vserver's own meminfo.</summary>
public sealed class MemoryPoolTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private const long MiB = 1L << 20;
    private TestHost Host => shared.Host;

    private JsonElement Stat() => JsonDocument.Parse(Host.Vsctl("stat", "-f", "json").ShouldSucceed().Stdout).RootElement;

    private static JsonElement Row(JsonElement stat, string guest) =>
        stat.GetProperty("guests").EnumerateArray().Single(g => g.GetProperty("name").GetString() == guest);

    private static long Bytes(JsonElement e, string property) => e.GetProperty(property).GetInt64();

    private JsonElement Pool() => JsonDocument.Parse(Host.Vsctl("host", "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("pool");

    /// <summary>Polls until the condition holds; fails with what was last seen.</summary>
    private static T Eventually<T>(Func<T> read, Func<T, bool> done, string what, int seconds = 30)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var value = read();
            if (done(value)) return value;
            if (clock.Elapsed > TimeSpan.FromSeconds(seconds)) throw new ShouldAssertException($"{what} did not happen within {seconds} s; last seen: {value}");
            Thread.Sleep(200);
        }
    }

    private void Destroy(params string[] guests)
    {
        foreach (var g in guests) Host.Vsctl("destroy", "--force", g);
    }

    [Fact]
    public void Two_vservers_running_the_same_processes_split_the_shared_cache_the_kernel_charges_to_the_first()
    {
        const string Ten = "sh -c 'i=0; while [ $i -lt 10 ]; do sleep 100000 & i=$((i+1)); done; wait'";
        try
        {
            Host.Vsctl("create", "fair-a", "--memory", "256M", "--cmd", Ten).ShouldSucceed();
            Host.Vsctl("create", "fair-b", "--memory", "256M", "--cmd", Ten).ShouldSucceed();
            // The image's busybox leaves the page cache, so the first vserver to run it is charged for all of it.
            var busybox = Path.Combine(Host.Root, "images", "busybox", "rootfs", "bin", "busybox");
            TestHost.Run("sync", busybox).ShouldSucceed();
            TestHost.Run("dd", $"if={busybox}", "iflag=nocache", "count=0", "status=none").ShouldSucceed();

            Host.Vsctl("start", "fair-a").ShouldSucceed();
            Eventually(() => Row(Stat(), "fair-a").GetProperty("processes").GetInt32(), n => n >= 11, "fair-a running its 10 sleeps");
            Host.Vsctl("start", "fair-b").ShouldSucceed();
            Eventually(() => Row(Stat(), "fair-b").GetProperty("processes").GetInt32(), n => n >= 11, "fair-b running its 10 sleeps");

            var stat = Stat();
            var a = Row(stat, "fair-a");
            var b = Row(stat, "fair-b");
            var (fairA, fairB) = (Bytes(a, "fairBytes"), Bytes(b, "fairBytes"));
            var (chargedA, chargedB) = (Bytes(a, "chargedBytes"), Bytes(b, "chargedBytes"));
            var detail = $"a: {a}\nb: {b}";
            // The kernel's view: the busybox binary's cache is all fair-a's.
            (chargedA - chargedB).ShouldBeGreaterThan(500 * 1024, detail);
            // The fair view: the same processes cost the same, within a quarter.
            Math.Abs(fairA - fairB).ShouldBeLessThan(Math.Max(fairA, fairB) / 4, detail);
            fairA.ShouldBeLessThan(chargedA, detail);
            // Each maps the shared binary: much of what it has resident is shared, and counted once across both.
            Bytes(a, "sharedBytes").ShouldBeGreaterThan(1 * MiB, detail);
            Bytes(a, "rssBytes").ShouldBeGreaterThan(fairA * 3, detail);
            Bytes(stat.GetProperty("host"), "sharedSavingsBytes").ShouldBeGreaterThan(10 * MiB, detail);

            var table = Host.Vsctl("stat").ShouldSucceed().Stdout;
            table.ShouldMatch(@"(?m)^fair-a\s+vserver\s+running\s+1[1-9]\s");
        }
        finally
        {
            Destroy("fair-a", "fair-b");
        }
    }

    [Fact]
    public void The_guests_fair_shares_and_the_hosts_own_use_add_up_to_what_meminfo_says_is_used()
    {
        try
        {
            // dd fills a 512M buffer and then blocks writing into a pipe nobody reads: 512M of anonymous memory held.
            Host.Vsctl("create", "sum-hog", "--memory", "1G", "--cmd", "sh -c 'dd if=/dev/zero bs=512M count=1 | sleep 100000'").ShouldSucceed();
            Host.Vsctl("start", "sum-hog").ShouldSucceed();
            // Both numbers asserted below: a stat taken while dd still fills its buffer reads the processes' maps one
            // after another and can show the fair share past 512M while the private part read before it is not yet.
            var stat = Eventually(Stat, s => Bytes(Row(s, "sum-hog"), "fairBytes") >= 512 * MiB && Bytes(Row(s, "sum-hog"), "privateBytes") >= 512 * MiB,
                "the hog's 512M showing in its fair share and its private memory");

            var host = stat.GetProperty("host");
            var hog = Row(stat, "sum-hog");
            var (used, guests, own, unaccounted, tolerance) = (Bytes(host, "usedBytes"), Bytes(host, "guestsBytes"), Bytes(host, "hostOwnBytes"),
                Bytes(host, "unaccountedBytes"), Bytes(host, "toleranceBytes"));
            var detail = $"host: {host}\nhog: {hog}";
            unaccounted.ShouldBe(used - guests - own, detail);
            Math.Abs(unaccounted).ShouldBeLessThanOrEqualTo(tolerance, detail);
            // The tolerance is far below the hog: counting it twice (guest and host) or not at all could not pass.
            tolerance.ShouldBeLessThan(512 * MiB, detail);
            Bytes(hog, "fairBytes").ShouldBeLessThan(600 * MiB, detail);
            Bytes(hog, "privateBytes").ShouldBeGreaterThanOrEqualTo(512 * MiB, detail);
            guests.ShouldBeGreaterThanOrEqualTo(Bytes(hog, "fairBytes"), detail);

            // /proc/meminfo read independently says the same used memory, within the tolerance and what moved meanwhile.
            var meminfo = File.ReadAllLines("/proc/meminfo").ToDictionary(l => l.Split(':')[0], l => long.Parse(l.Split(':')[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024);
            Math.Abs(meminfo["MemTotal"] - meminfo["MemFree"] - used).ShouldBeLessThan(1L << 30, detail);
        }
        finally
        {
            Destroy("sum-hog");
        }
    }

    [Fact]
    public void Guarantees_beyond_the_pools_capacity_are_refused_with_the_numbers_and_leave_nothing()
    {
        var capacity = Pool().GetProperty("capacityBytes").GetInt64();
        try
        {
            var tooBig = Host.Vsctl("create", "adm-huge", "--memory-min", $"{capacity / MiB + 1}M");
            tooBig.ShouldFailWith("does not fit the memory pool");
            tooBig.Stderr.ShouldContain("is committed");
            tooBig.Stderr.ShouldContain("is free");
            tooBig.Stderr.Trim().Split('\n').Length.ShouldBe(1, tooBig.ToString());
            Host.ShouldHaveNoTraceOf("adm-huge");

            // Promise almost all of it to one guest: the next promise of 2G no longer fits, and says what is taken.
            Host.Vsctl("create", "adm-first", "--memory-min", $"{(capacity - (1L << 30)) / MiB}M").ShouldSucceed();
            Pool().GetProperty("committedBytes").GetInt64().ShouldBeGreaterThanOrEqualTo(capacity - (1L << 30) - MiB);
            var second = Host.Vsctl("create", "adm-second", "--memory-min", "2G");
            second.ShouldFailWith("does not fit the memory pool");
            second.Stderr.ShouldContain("committed to 1 other guest");
            Host.ShouldHaveNoTraceOf("adm-second");
            Host.Vsctl("list").Stdout.ShouldNotContain("adm-second");

            // A smaller one still fits; raising a guarantee past the capacity is refused the same way.
            Host.Vsctl("create", "adm-small", "--memory-min", "256M").ShouldSucceed();
            Host.Vsctl("set", "adm-small", "--memory-min", "2G").ShouldFailWith("does not fit the memory pool");
            JsonDocument.Parse(Host.Vsctl("status", "adm-small", "-f", "json").ShouldSucceed().Stdout).RootElement
                .GetProperty("memoryMinBytes").GetInt64().ShouldBe(256 * MiB);
            // Nor may the reserve grow so far that the promises no longer fit.
            Host.Vsctl("host", "set", "--reserve", "4G").ShouldFailWith("already guaranteed");
            // One limit above what the host has is refused as such.
            Host.Vsctl("create", "adm-limit", "--memory", $"{capacity * 3 / MiB}M").ShouldFailWith("more than this host has");
            Host.ShouldHaveNoTraceOf("adm-limit");
            // Limits may overcommit up to the ratio (2 by default), not beyond.
            Destroy("adm-first", "adm-small");
            Host.Vsctl("create", "adm-limit1", "--memory", $"{capacity / MiB}M").ShouldSucceed();
            Host.Vsctl("create", "adm-limit2", "--memory", $"{capacity / MiB}M").ShouldSucceed();
            Host.Vsctl("create", "adm-limit3", "--memory", $"{capacity / MiB}M").ShouldFailWith("overcommit");
            Host.ShouldHaveNoTraceOf("adm-limit3");
        }
        finally
        {
            Destroy("adm-first", "adm-second", "adm-small", "adm-huge", "adm-limit", "adm-limit1", "adm-limit2", "adm-limit3");
        }
    }

    [Fact]
    public void Free_and_meminfo_inside_a_vserver_show_its_own_limit_and_follow_its_usage()
    {
        try
        {
            Host.Vsctl("create", "view", "--memory", "128M").ShouldSucceed();
            Host.Vsctl("start", "view").ShouldSucceed();
            // busybox free asks sysinfo(2); its first line of numbers is the total in KiB.
            var free = Host.Vsctl("exec", "view", "--", "free").ShouldSucceed().Stdout;
            free.ShouldMatch(@"(?m)^Mem:\s+131072\s", free);
            var meminfo = Host.Vsctl("exec", "view", "--", "cat", "/proc/meminfo").ShouldSucceed().Stdout;
            meminfo.ShouldStartWith("MemTotal:         131072 kB");

            long MemFreeKb() => long.Parse(System.Text.RegularExpressions.Regex.Match(
                Host.Vsctl("exec", "view", "--", "cat", "/proc/meminfo").ShouldSucceed().Stdout, @"MemFree:\s+(\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
            var before = MemFreeKb();
            // 64M held in the guest shows as 64M less free inside within a second or two.
            Host.Vsctl("exec", "view", "--", "sh", "-c", "(dd if=/dev/zero bs=64M count=1 | sleep 100000) </dev/null >/dev/null 2>&1 &").ShouldSucceed();
            Eventually(MemFreeKb, kb => kb < before - 50 * 1024, "MemFree inside dropping by the 64M held");
            Host.Vsctl("exec", "view", "--", "sh", "-c", "echo x > /proc/meminfo").Code.ShouldNotBe(0);
        }
        finally
        {
            Destroy("view");
        }
    }
}
