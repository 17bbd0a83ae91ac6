using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>
/// Latency is measured here, so this class runs alone: xunit starts it after the parallel collections are done,
/// and nothing else of the suite competes for the two cores while it measures.
/// </summary>
[CollectionDefinition(nameof(NeighbourTests), DisableParallelization = true)]
public sealed class NeighbourTestsCollection;

/// <summary>
/// A fork bomb, a memory hog, a CPU burner and a disk filler in one vserver leave a neighbour vserver responsive:
/// the wall time of <c>vsctl exec victim -- true</c> (the whole vsctl process, as a user feels it) stays within a
/// stated bound while each attack runs.
/// </summary>
[Collection(nameof(NeighbourTests))]
public sealed class NeighbourTests
{
    // The attacker gets what an operator's plan would set; the victim gets nothing special.
    private const int AttackerPids = 128;
    private const long AttackerMemory = 64L << 20;

    private const int RestSamples = 15;
    private const int AttackSamples = 15;
    // After each attack is stopped: the victim is back to normal, and these samples join the baseline so that it
    // follows slow changes of the machine's background load over the test's minute.
    private const int RecoverySamples = 6;

    // The bound, from measurements on this machine (2 vCPUs, Debian 12, kernel 6.18). Baseline p50 of the victim's
    // exec, pooled over the rest windows: 150-160 ms when the machine is otherwise quiet, 180-250 ms while other work
    // runs on it; nearly all of it is the .NET start of vsctl itself (JIT on both cores), not the agent or vsinit.
    // Ten runs of this test with the attacker limited as above, p50 as a multiple of the baseline p50, and the slowest
    // single exec (3 runs on a quiet machine / 7 runs with other work going on):
    //   fork bomb   1.3-1.6x, max 0.31 s / 1.4-1.7x, max 0.68 s   (128 processes, ~6,000 refused forks a second)
    //   memory hog  1.3x,     max 0.32 s / 1.1-2.1x, max 0.69 s   (~15 OOM kills a second, peak = the 64M limit)
    //   CPU burner  1.4x,     max 0.26 s / 1.0-1.4x, max 0.93 s   (up to one CPU, as --cpus 1 allows)
    //   disk filler 1.1-1.2x, max 0.25 s / 0.9-1.7x, max 0.77 s   (~1 GiB written and synced a second)
    // By hand, with heavier load from elsewhere, the CPU burner reached 2.6x: a guest allowed one CPU of two takes it,
    // and vsctl then starts on one core instead of two. So: p50 at most 3x the baseline p50 (and never less than
    // baseline + 300 ms, see below), and no single exec slower than 2 s; that holds with margin on a shared machine.
    // What breaks it: the same fork bomb in a guest with --pids 12000 --memory 4G and no --cpus (tried by hand, with
    // that finite limit) took the victim's exec to p50 1.6 s (~8x) and max 10 s. Milder ones do not: with --pids
    // 2000 or 4000 and no --cpus it was p50 1.2-2.8x, max 0.7-2.0 s, so the bound catches a gross failure of the
    // confinement, not every change. (Without a pids limit the 64M memory limit still stops this bomb at ~600
    // processes.)
    // Since vsctl is native (2026-12-08) its baseline exec is ~50 ms, not ~300, so 3x shrank the bound from ~900 to
    // ~150-200 ms, and the disk filler (no per-guest I/O limit yet: 1 GiB fsynced on the shared disk) measured p50
    // 229 ms, +170 ms: the floor is the absolute slack that kept the old bound's meaning, 300 ms.
    private const double P50Factor = 3.0;
    private static readonly TimeSpan P50Floor = TimeSpan.FromMilliseconds(300);
    private static readonly TimeSpan MaxLatency = TimeSpan.FromSeconds(2);

    private sealed record Window(string Name, List<double> Ms)
    {
        public double P50 => Percentile(Ms, 0.5);
        public double Max => Ms.Max();
    }

    [Fact]
    public async Task A_fork_bomb_memory_hog_cpu_burner_and_disk_filler_leave_the_neighbour_responsive()
    {
        await using var host = await TestHost.StartAsync();
        var output = TestContext.Current.TestOutputHelper;
        host.Vsctl("create", "attacker", "--memory", "64M", "--cpus", "1", "--pids", AttackerPids.ToString(CultureInfo.InvariantCulture))
            .ShouldSucceed();
        host.Vsctl("create", "victim").ShouldSucceed();
        host.Vsctl("start", "attacker").ShouldSucceed();
        host.Vsctl("start", "victim").ShouldSucceed();
        var pidsDir = Path.Combine("/sys/fs/cgroup/pids", host.CgroupParent, "attacker");
        var fill = Path.Combine(host.GuestDir("attacker"), "upper", "fill");

        // Unmeasured execs first: the first ones after start are slower (files read from disk, .NET code of the agent
        // and of this test not yet recompiled by the tiered JIT).
        var warmup = Measure(host, 10, null);
        var rest = new Window("at rest", Measure(host, RestSamples, null));
        var recovered = new List<double>();
        var attacks = new List<(Window Window, string Evidence)>();

        // Fork bomb. busybox ash exits when a fork fails, so a plain `while :; do sh & done` dies at the limit and
        // a `f(){ f|f& }; f` collapses within a second. An interactive shell (sh -i) reports the failed fork and
        // reads its next command, so four of them fed an endless stream of `sh /bomb &` keep the guest at its pids
        // limit, and every /bomb forks in a loop until it cannot: the guest keeps hammering fork() at the limit.
        var refusedBefore = RefusedForks(pidsDir);
        var peakPids = 0L;
        var bomb = Attack(host, "fork bomb",
            "printf 'while :; do sh /bomb & done\\n' > /bomb; for i in 1 2 3 4; do (yes 'sh /bomb &' | sh -i) & done",
            ready: () => CgroupNumber(pidsDir, "pids.current") >= AttackerPids,
            probe: () => peakPids = Math.Max(peakPids, CgroupNumber(pidsDir, "pids.current")));
        var refused = RefusedForks(pidsDir) - refusedBefore;
        attacks.Add((bomb, $"peak {peakPids} processes (limit {AttackerPids}), {refused} forks refused"));
        StopAttack(host, recovered);
        peakPids.ShouldBe(AttackerPids, "the fork bomb must have filled the attacker's pids limit");
        refused.ShouldBeGreaterThan(1000, "the fork bomb must have kept forking at the limit");

        // Memory hog: dd allocates its block size, 100M in a 64M guest, again and again as each one is OOM-killed.
        var oomBefore = Usage(host).OomKills;
        var hog = Attack(host, "memory hog",
            "while :; do dd if=/dev/zero of=/dev/null bs=100M count=1; done",
            ready: () => Usage(host).OomKills > oomBefore, probe: null);
        var hogUsage = Usage(host);
        attacks.Add((hog, $"{hogUsage.OomKills - oomBefore} OOM kills, memory peak {hogUsage.MemoryPeakBytes >> 20}M (limit {AttackerMemory >> 20}M)"));
        StopAttack(host, recovered);
        (hogUsage.OomKills - oomBefore).ShouldBeGreaterThan(0, "the memory hog must have been OOM-killed in its own cgroup");
        hogUsage.MemoryPeakBytes.ShouldNotBeNull();
        hogUsage.MemoryPeakBytes.Value.ShouldBeLessThanOrEqualTo(AttackerMemory, "the attacker's memory stays within --memory");

        // CPU burner: four busy loops on a two-core machine; --cpus 1 lets the attacker have one core.
        var cpuBefore = Usage(host).CpuSeconds;
        var clock = Stopwatch.StartNew();
        var burner = Attack(host, "CPU burner",
            "for i in 1 2 3 4; do (while :; do :; done) & done",
            ready: () => Usage(host).CpuSeconds > cpuBefore + 0.2, probe: null);
        var cpuUsed = Usage(host).CpuSeconds - cpuBefore;
        var burnerWall = clock.Elapsed.TotalSeconds;
        attacks.Add((burner, $"{cpuUsed:0.0} CPU seconds in {burnerWall:0.0} s (limit 1 CPU)"));
        StopAttack(host, recovered);
        cpuUsed.ShouldBeGreaterThan(1.0, "the CPU burner must have burnt CPU");
        cpuUsed.ShouldBeLessThanOrEqualTo(burnerWall * 1.1 + 0.2, "the attacker stays within --cpus 1");

        // Disk filler: 1 GiB written and synced to the guest's file system, deleted, four times at most (bounded: at
        // most 1 GiB on disk and 4 GiB written; it is stopped earlier). There is no per-guest disk quota yet: the
        // file lands in the attacker's upper dir on the host's file system (here under the test's temp root), and
        // only the host's free space bounds it.
        long peakFill = 0;
        var filler = Attack(host, "disk filler",
            "i=0; while [ $i -lt 4 ]; do dd if=/dev/zero of=/fill bs=1M count=1024 conv=fsync; rm -f /fill; i=$((i+1)); done",
            ready: () => FileSize(fill) > 0,
            probe: () => peakFill = Math.Max(peakFill, FileSize(fill)));
        attacks.Add((filler, $"file grew to {peakFill >> 20}M"));
        StopAttack(host, recovered);
        host.Vsctl("exec", "attacker", "--", "rm", "-f", "/fill").ShouldSucceed();
        File.Exists(fill).ShouldBeFalse("the filler's file is deleted again");
        peakFill.ShouldBeGreaterThan(256L << 20, "the disk filler must have written to the attacker's file system");

        // The report, then the bound.
        var baseline = new Window("baseline (at rest + after each attack)", [.. rest.Ms, .. recovered]);
        var limitP50 = Math.Max(P50Factor * baseline.P50, baseline.P50 + P50Floor.TotalMilliseconds);
        output?.WriteLine($"vsctl exec victim -- true, wall ms      n    p50    max");
        foreach (var w in new[] { rest, new Window("after the attacks", recovered), baseline })
            output?.WriteLine($"{w.Name,-38} {w.Ms.Count,3} {w.P50,6:0} {w.Max,6:0}");
        foreach (var (w, evidence) in attacks)
            output?.WriteLine($"{"under " + w.Name,-38} {w.Ms.Count,3} {w.P50,6:0} {w.Max,6:0}   {w.P50 / baseline.P50:0.0}x; {evidence}");
        foreach (var w in new[] { new Window("warm-up", warmup), rest, new Window("after the attacks", recovered) }.Concat(attacks.Select(a => a.Window)))
            output?.WriteLine($"  {w.Name}: {Samples(w)}");
        output?.WriteLine($"bound: p50 <= {limitP50:0} ms (max of {P50Factor}x baseline p50 and baseline + {P50Floor.TotalMilliseconds:0} ms), max <= {MaxLatency.TotalMilliseconds:0} ms");

        foreach (var (w, _) in attacks)
        {
            w.P50.ShouldBeLessThanOrEqualTo(limitP50, $"p50 under {w.Name}: {Samples(w)}");
            w.Max.ShouldBeLessThanOrEqualTo(MaxLatency.TotalMilliseconds, $"slowest exec under {w.Name}");
        }
    }

    private static string Samples(Window w) => string.Join(' ', w.Ms.Select(m => m.ToString("0", CultureInfo.InvariantCulture)));

    /// <summary>Starts SCRIPT in the attacker in the background, waits until READY shows it works, then measures.</summary>
    private static Window Attack(TestHost host, string name, string script, Func<bool> ready, Action? probe)
    {
        host.Vsctl("exec", "attacker", "--", "sh", "-c", $"( {script} ) </dev/null >/dev/null 2>&1 &").ShouldSucceed();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!ready())
        {
            if (DateTime.UtcNow > deadline) throw new ShouldAssertException($"the {name} did not get going within 10 s");
            Thread.Sleep(100);
        }
        var ms = Measure(host, AttackSamples, probe);
        return new Window(name, ms);
    }

    /// <summary>Ends every process of the attacker (kill, no grace period) and starts it fresh, then checks the victim.</summary>
    private static void StopAttack(TestHost host, List<double> recovered)
    {
        host.Vsctl("stop", "attacker", "-t", "0").ShouldSucceed();
        host.Vsctl("start", "attacker").ShouldSucceed();
        recovered.AddRange(Measure(host, RecoverySamples, null));
    }

    private static List<double> Measure(TestHost host, int count, Action? probe)
    {
        var ms = new List<double>(count);
        for (var i = 0; i < count; i++)
        {
            var clock = Stopwatch.StartNew();
            var result = host.Vsctl("exec", "victim", "--", "true");
            clock.Stop();
            result.ShouldSucceed();
            ms.Add(clock.Elapsed.TotalMilliseconds);
            probe?.Invoke();
        }
        return ms;
    }

    private sealed record AttackerUsage(int Processes, double CpuSeconds, long OomKills, long? MemoryPeakBytes);

    /// <summary>The attacker's usage as the agent reports it (vsctl status -f json).</summary>
    private static AttackerUsage Usage(TestHost host)
    {
        var status = host.Vsctl("status", "attacker", "-f", "json").ShouldSucceed().Stdout;
        var usage = JsonDocument.Parse(status).RootElement.GetProperty("usage");
        return new AttackerUsage(
            usage.GetProperty("processes").GetInt32(),
            usage.GetProperty("cpuSeconds").GetDouble(),
            usage.GetProperty("oomKills").GetInt64(),
            usage.TryGetProperty("memoryPeakBytes", out var peak) && peak.ValueKind == JsonValueKind.Number ? peak.GetInt64() : null);
    }

    /// <summary>How many forks the pids controller refused ("max N" in pids.events).</summary>
    private static long RefusedForks(string pidsDir) =>
        long.Parse(File.ReadAllText(Path.Combine(pidsDir, "pids.events")).Split(' ', '\n')[1], CultureInfo.InvariantCulture);

    private static long CgroupNumber(string dir, string file) =>
        long.Parse(File.ReadAllText(Path.Combine(dir, file)).Trim(), CultureInfo.InvariantCulture);

    private static long FileSize(string path)
    {
        try
        {
            return new FileInfo(path).Length;
        }
        catch (FileNotFoundException)
        {
            return 0;
        }
    }

    private static double Percentile(List<double> values, double p)
    {
        var sorted = values.Order().ToList();
        var rank = p * (sorted.Count - 1);
        var lo = (int)Math.Floor(rank);
        var hi = (int)Math.Ceiling(rank);
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
    }
}
