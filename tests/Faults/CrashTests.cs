using System.Diagnostics;
using Vserver.Api;
using Vserver.IntegrationTests;
using Xunit.Sdk;

namespace Vserver.FaultTests;

/// <summary>An agent started with its crash points armable and the busybox image built; the domain class also builds
/// the default kernel.</summary>
public abstract class TortureHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    protected virtual bool Domains => false;

    public async ValueTask InitializeAsync()
    {
        Host = TestHost.CreateWithoutAgent();
        try
        {
            await Host.StartAgentAsync(Torture.Armable);
            Host.Vsctl("image", "build", "busybox").ShouldSucceed();
            if (Domains) Host.Vsctl("kernel", "build", "default").ShouldSucceed();
        }
        catch
        {
            await Host.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Host.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

public sealed class VserverTortureHost : TortureHost;

public sealed class DomainTortureHost : TortureHost
{
    protected override bool Domains => true;
}

/// <summary>
/// The agent killed by SIGKILL at every crash point of create, start, set, port add, stop, set --disk, destroy and
/// apply in turn, then at random moments of create/start/stop/destroy until at least 200 kills: after each, the agent
/// is started again and every guest must be whole or gone, with nothing orphaned (checked from outside the agent).
/// </summary>
public sealed class VserverCrashTests(VserverTortureHost shared, ITestOutputHelper output) : IClassFixture<VserverTortureHost>
{
    private TestHost Host => shared.Host;

    [Fact(Timeout = 1_200_000)]
    public async Task Agent_killed_at_any_point_leaves_every_vserver_whole_or_gone_and_nothing_orphaned()
    {
        var t = new Torture(Host);
        const string x = "tx";
        string[] create = ["--disk", "32M", "--memory", "64M"];
        await t.CreateAndStartAsync(x, create);
        var memory = 64;
        await t.EveryPointAsync("set", () => t.RunningAsync(x), () => Host.Vsctl("set", x, "--memory", $"{memory += 8}M"), () => LimitIsTheRecordedOneAsync(x));
        await t.EveryPointAsync("port add", async () =>
        {
            await t.RunningAsync(x);
            if (t.Find(x)!.Ports is { Count: > 0 }) Host.Vsctl("port", "remove", x, "18080").ShouldSucceed();
        }, () => Host.Vsctl("port", "add", x, "18080:80"));
        await t.EveryPointAsync("stop", () => t.RunningAsync(x), () => Host.Vsctl("stop", x));
        var disk = 32;
        await t.EveryPointAsync("set --disk", () => t.StoppedAsync(x), () => Host.Vsctl("set", x, "--disk", $"{disk += 8}M"));
        await t.EveryPointAsync("destroy", async () =>
        {
            t.Exists(x, create);
            await t.RunningAsync(x);
        }, () => Host.Vsctl("destroy", "--force", x), () => t.WholeOrGoneAsync(x));

        var file = Path.Combine(Host.Dir, "hosting.yaml");
        File.WriteAllText(file, """
            plans:
              small: { memory: 64M, disk: 32M }
            servers:
              - { name: ap1, plan: small, ports: ["18181:80"] }
              - { name: ap2, plan: small, running: false, autostart: true }
            """);
        await t.EveryPointAsync("apply", () => Task.Run(() =>
        {
            t.Gone("ap1");
            t.Gone("ap2");
        }), () => Host.Vsctl("apply", file), async () =>
        {
            await t.WholeOrGoneAsync("ap1");
            await t.WholeOrGoneAsync("ap2");
        });
        var walked = t.Kills;

        // Then at random moments, through the API (no client start-up in the window), until 200 kills in all.
        var seed = Environment.TickCount;
        var random = new Random(seed);
        var rounds = 0;
        while (t.Kills < 200)
        {
            rounds++.ShouldBeLessThan(400, "random kills keep missing the operations");
            var g = t.Find(x);
            Func<AgentClient, Task> operation = g is null
                ? c => c.CreateAsync(new GuestSpec { Name = x, MemoryBytes = 64 << 20, DiskBytes = 32 << 20 })
                : g.State == "running" ? (rounds % 3 == 0 ? c => c.DestroyAsync(x, force: true) : c => c.StopAsync(x))
                : rounds % 4 == 0 ? c => c.DestroyAsync(x, force: true) : c => c.StartAsync(x);
            await t.AtRandomAsync(random, operation, 60, () => t.WholeOrGoneAsync(x));
        }
        output.WriteLine(string.Join("\n", t.Log));
        output.WriteLine($"{walked} kills at crash points, {t.Kills - walked} at random moments (seed {seed}), {t.Kills} in all");
        t.Kills.ShouldBeGreaterThanOrEqualTo(200);
    }

    /// <summary>A running vserver's memory limit in its cgroup is the one its config records (a `set` the agent died in
    /// is either recorded and applied, or undone).</summary>
    private async Task LimitIsTheRecordedOneAsync(string name)
    {
        using var client = Host.Client();
        var g = await client.GetAsync(name);
        if (g.State != "running") return;
        var v1 = $"/sys/fs/cgroup/memory/{Host.CgroupParent}/{name}/memory.limit_in_bytes";
        var v2 = $"/sys/fs/cgroup/{Host.CgroupParent}/{name}/memory.max";
        var limit = long.Parse(File.ReadAllText(File.Exists(v1) ? v1 : v2).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        limit.ShouldBe(g.MemoryBytes!.Value, $"the cgroup's limit against the recorded one\n{Host.AgentLog}");
    }
}

/// <summary>
/// The same for domains and conversions: create, start, stop, save, restore, promote and demote, each killed at every
/// crash point; a promotion or demotion the agent died in is finished or rolled back, and the guest runs either way.
/// </summary>
public sealed class DomainCrashTests(DomainTortureHost shared, ITestOutputHelper output) : IClassFixture<DomainTortureHost>
{
    private TestHost Host => shared.Host;

    [Fact(Timeout = 1_500_000)]
    public async Task Agent_killed_at_any_point_leaves_every_domain_whole_or_gone_and_conversions_finished_or_undone()
    {
        var t = new Torture(Host);
        const string d = "td";
        string[] create = ["--kind", "domain", "--memory", "128M"];
        await t.CreateAndStartAsync(d, create, "domain");
        await t.EveryPointAsync("stop domain", () => t.RunningAsync(d), () => Host.Vsctl("stop", "--timeout", "0", d));

        var save = Path.Combine(Host.Dir, "td.save");
        await t.EveryPointAsync("save", async () =>
        {
            File.Delete(save);
            t.Exists(d, create);
            await t.RunningAsync(d);
        }, () => Host.Vsctl("save", d, save), () =>
        {
            // Saved (the domain lives in the file) or not (it runs on, or is stopped with its disk): never both, never neither.
            var there = t.Find(d) is not null;
            there.ShouldNotBe(File.Exists(save), $"{d} listed: {there}, save file: {File.Exists(save)}\n{Host.AgentLog}");
            return t.WholeOrGoneAsync(d);
        });
        await t.EveryPointAsync("restore", async () =>
        {
            if (t.Find(d) is not null && !File.Exists(save))
            {
                await t.RunningAsync(d);
                Host.Vsctl("save", d, save).ShouldSucceed();
            }
            t.Gone(d);
        }, () => Host.Vsctl("restore", save), () => t.WholeOrGoneAsync(d));

        const string p = "tp";
        await t.EveryPointAsync("promote", async () =>
        {
            t.Exists(p, "--memory", "128M");
            await t.RunningAsync(p);
            if (t.Find(p)!.Kind == "domain") Host.Vsctl("demote", p).ShouldSucceed();
        }, () => Host.Vsctl("promote", p), () => RunsAsAnyKindAsync(t, p));
        await t.EveryPointAsync("demote", async () =>
        {
            t.Exists(p, "--memory", "128M");
            await t.RunningAsync(p);
            if (t.Find(p)!.Kind == "vserver") Host.Vsctl("promote", p).ShouldSucceed();
        }, () => Host.Vsctl("demote", p), () => RunsAsAnyKindAsync(t, p));

        output.WriteLine(string.Join("\n", t.Log));
        output.WriteLine($"{t.Kills} kills at crash points");
        t.Kills.ShouldBeGreaterThanOrEqualTo(40);
    }

    /// <summary>A conversion of a running guest, finished or rolled back, leaves it running: as a vserver or a domain.</summary>
    private static async Task RunsAsAnyKindAsync(Torture t, string name) =>
        await t.WaitForAsync(name, g => g?.State == "running", "running (as either kind) after a conversion the agent died in", 120);
}
