using System.Text;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>
/// vsctl apply and export against a real agent of their own (prune removes every guest a file does not list, so no
/// other test's guests may share it): a hosting file of 20 vservers in 3 plans, applied, re-applied, changed, pruned.
/// </summary>
public sealed class ApplyTests(SharedHost shared) : IClassFixture<SharedHost>, IDisposable
{
    private TestHost Host => shared.Host;
    private readonly string _dir = Directory.CreateTempSubdirectory("vsapply-").FullName;

    public void Dispose()
    {
        // Whatever a test left: every guest of this agent is this class's.
        foreach (var g in Guests()) Host.Vsctl("destroy", "--force", g.GetProperty("name").GetString()!);
        Directory.Delete(_dir, recursive: true);
    }

    private List<JsonElement> Guests() =>
        JsonDocument.Parse(Host.Vsctl("list", "-f", "json").ShouldSucceed().Stdout).RootElement.EnumerateArray().ToList();

    private JsonElement Status(string guest) => JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement;

    private string Write(string name, string yaml)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, yaml);
        return path;
    }

    private static readonly (string Plan, int Count)[] Layout = [("small", 8), ("medium", 7), ("large", 5)];

    private string HostingFile(string mediumMemory = "128M", int skipLast = 0)
    {
        var yaml = new StringBuilder($"""
            plans:
              small: {"{"} memory: 64M, memory-min: 16M, cpus: 0.5, pids: 100 {"}"}
              medium:
                memory: {mediumMemory}
                cpus: 1
                pids: 200
              large: {"{"} memory: 256M, memory-min: 64M, cpus: 1.5, pids: 400 {"}"}
            servers:

            """);
        var names = Layout.SelectMany(l => Enumerable.Range(1, l.Count).Select(i => (Name: $"{l.Plan}{i}", l.Plan))).ToList();
        foreach (var (name, plan) in names.Take(names.Count - skipLast))
        {
            var extra = name == "large1" ? $", ip: {Host.SubnetPrefix}.200, restart: on-failure" : "";
            yaml.Append($"  - {{ name: {name}, plan: {plan}{extra} }}\n");
        }
        return yaml.ToString();
    }

    private static (long Memory, double Cpus, int Pids) PlanLimits(string plan, long mediumMemory) => plan switch
    {
        "small" => (64L << 20, 0.5, 100),
        "medium" => (mediumMemory, 1, 200),
        _ => (256L << 20, 1.5, 400),
    };

    private static long MemTotalInside(TestHost host, string guest)
    {
        var line = host.Vsctl("exec", guest, "--", "grep", "MemTotal", "/proc/meminfo").ShouldSucceed().Stdout;
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }

    [Fact]
    public void A_dry_run_asks_the_agent_about_the_whole_plan_and_refuses_what_the_apply_would()
    {
        // (Two servers of one file on one address or host port vsctl refuses itself, before asking.)
        var prefix = Host.SubnetPrefix;
        Host.Vsctl("create", "held1", "--ip", $"{prefix}.50").ShouldSucceed();
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var busyPort = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var file = Write("clashes.yaml", $$"""
            plans:
              small: { memory: 64M }
            servers:
              - { name: first1, plan: small, ip: {{prefix}}.60, ports: ["18181:80"] }
              - { name: other3, plan: small, ip: {{prefix}}.50 }
              - { name: gateway4, plan: small, ip: {{prefix}}.1 }
              - { name: outside5, plan: small, ip: 192.0.2.9 }
              - { name: listened6, plan: small, ports: ["{{busyPort}}:80"] }
            """);

        foreach (var dryRun in new[] { true, false })
        {
            var result = dryRun ? Host.Vsctl("apply", file, "--dry-run") : Host.Vsctl("apply", file);
            result.Code.ShouldBe(1, result.ToString());
            var lines = result.Stdout.Split('\n');
            string Line(string name) => lines.Single(l => l.StartsWith($"{name}: ", StringComparison.Ordinal));
            var refused = dryRun ? "cannot: " : "FAILED at 'create (plan small)': ";
            Line("first1").ShouldStartWith(dryRun ? "first1: would create" : "first1: create (plan small)");
            Line("other3").ShouldContain($"{refused}address {prefix}.50 is already taken by guest 'held1'");
            Line("gateway4").ShouldContain(refused);
            Line("gateway4").ShouldContain("gateway");
            Line("outside5").ShouldContain(refused);
            Line("outside5").ShouldContain("outside");
            Line("listened6").ShouldContain($"host port {busyPort}/tcp is in use on this host");
            var names = Guests().Select(g => g.GetProperty("name").GetString()).ToList();
            names.ShouldBe(dryRun ? ["held1"] : ["first1", "held1"], "a dry run makes nothing; the apply makes only what the check allowed");
        }
    }

    [Fact]
    public void A_dry_run_of_more_servers_than_the_subnet_has_addresses_refuses_those_beyond_it()
    {
        var yaml = new StringBuilder("plans:\n  tiny: { memory: 8M }\nservers:\n");
        for (var i = 1; i <= 260; i++) yaml.Append($"  - {{ name: many{i}, plan: tiny }}\n");
        var file = Write("many.yaml", yaml.ToString());

        var result = Host.Vsctl("apply", file, "--dry-run");

        result.Code.ShouldBe(1, result.ToString());
        var full = result.Stdout.Split('\n').Where(l => l.Contains("cannot: ", StringComparison.Ordinal)).ToList();
        // A /24 gives guests .2 to .254: 253 addresses.
        full.Count.ShouldBe(260 - 253, result.Stdout);
        full.ShouldAllBe(l => l.Contains("is full"));
        full[0].ShouldStartWith("many254: ");
        Guests().ShouldBeEmpty();
    }

    [Fact]
    public void A_file_of_twenty_vservers_in_three_plans_is_applied_reapplied_changed_live_and_pruned()
    {
        var file = Write("hosting.yaml", HostingFile());

        var dry = Host.Vsctl("apply", file, "--dry-run").ShouldSucceed().Stdout;
        dry.ShouldContain("small1: would create (plan small), start");
        dry.ShouldContain("dry run, nothing changed: 20 created");
        Guests().ShouldBeEmpty("a dry run created guests");

        var applied = Host.Vsctl("apply", file).ShouldSucceed().Stdout;
        applied.ShouldContain("20 created, 0 changed, 0 unchanged, 0 removed, 0 failed");
        var guests = Guests();
        guests.Count.ShouldBe(20);
        foreach (var (plan, count) in Layout)
        {
            for (var i = 1; i <= count; i++)
            {
                var status = Status($"{plan}{i}");
                var (memory, cpus, pids) = PlanLimits(plan, 128L << 20);
                status.GetProperty("state").GetString().ShouldBe("running", $"{plan}{i}");
                status.GetProperty("memoryBytes").GetInt64().ShouldBe(memory, $"{plan}{i}");
                status.GetProperty("cpus").GetDouble().ShouldBe(cpus, $"{plan}{i}");
                status.GetProperty("pids").GetInt32().ShouldBe(pids, $"{plan}{i}");
            }
        }
        // What the customer sees inside: the plan's memory as the machine's.
        MemTotalInside(Host, "small3").ShouldBe(64L << 20);
        MemTotalInside(Host, "large2").ShouldBe(256L << 20);
        Status("large1").GetProperty("ipv4").GetString().ShouldBe($"{Host.SubnetPrefix}.200");
        Status("large1").GetProperty("restart").GetString().ShouldBe("on-failure");
        Status("large1").GetProperty("memoryMinBytes").GetInt64().ShouldBe(64L << 20);

        Host.Vsctl("apply", file).ShouldSucceed().Stdout.ShouldContain("0 created, 0 changed, 20 unchanged, 0 removed, 0 failed");

        // A bigger medium plan: its seven running guests change live (same init), the others not at all.
        var pidBefore = Status("medium4").GetProperty("initPid").GetInt32();
        var bigger = Write("bigger.yaml", HostingFile(mediumMemory: "192M"));
        var changed = Host.Vsctl("apply", bigger).ShouldSucceed().Stdout;
        changed.ShouldContain("0 created, 7 changed, 13 unchanged");
        changed.ShouldContain("medium4: memory 128M -> 192M (live)");
        Status("medium4").GetProperty("memoryBytes").GetInt64().ShouldBe(192L << 20);
        Status("medium4").GetProperty("initPid").GetInt32().ShouldBe(pidBefore, "a live change restarted the guest");
        MemTotalInside(Host, "medium4").ShouldBe(192L << 20);

        // The file as the host now is: export, and applying the export changes nothing.
        var exported = Path.Combine(_dir, "exported.yaml");
        Host.Vsctl("export", "-o", exported).ShouldSucceed();
        Host.Vsctl("apply", exported).ShouldSucceed().Stdout.ShouldContain("20 unchanged");

        // Three servers dropped from the file: only --prune removes them, and exactly them.
        var fewer = Write("fewer.yaml", HostingFile(mediumMemory: "192M", skipLast: 3));
        Host.Vsctl("apply", fewer).ShouldSucceed().Stdout.ShouldContain("0 removed");
        Guests().Count.ShouldBe(20);
        var pruned = Host.Vsctl("apply", fewer, "--prune").ShouldSucceed().Stdout;
        pruned.ShouldContain("17 unchanged, 3 removed, 0 failed");
        var left = Guests().Select(g => g.GetProperty("name").GetString()).ToList();
        left.Count.ShouldBe(17);
        left.ShouldNotContain("large3");
        left.ShouldNotContain("large4");
        left.ShouldNotContain("large5");
        foreach (var gone in new[] { "large3", "large4", "large5" }) Host.ShouldHaveNoTraceOf(gone);
    }

    [Fact]
    public void An_invalid_file_changes_nothing_and_a_server_that_fails_leaves_no_half_made_guest()
    {
        var broken = Write("broken.yaml", "plans:\n  p: { memory: 64M }\nservers:\n  - { name: ok1, plan: p }\n  - { name: bad, plan: nosuch }\n");
        var refused = Host.Vsctl("apply", broken);
        refused.Code.ShouldBe(2);
        refused.Stderr.Trim().ShouldBe($"vsctl: {broken}:5:24: server 'bad': unknown plan 'nosuch' (plans: p); nothing was changed");
        Guests().ShouldBeEmpty();

        Host.Vsctl("apply", Write("syntax.yaml", "plans:\n  p: { memory: 64M\nservers: []\n")).ShouldFailWith("syntax.yaml:2:14: not valid YAML from here on");
        Host.Vsctl("apply", Write("image.yaml", "plans:\n  p: { image: nosuch }\nservers:\n  - { name: a1, plan: p }\n"))
            .ShouldFailWith("image 'nosuch' is not built on this host; build it with: vsctl image build nosuch; nothing was changed");
        Guests().ShouldBeEmpty();

        // One server asks for an address outside the host's subnet: it fails alone, the others are made.
        var mixed = Write("mixed.yaml", $"plans:\n  p: {{ memory: 64M }}\nservers:\n  - {{ name: good1, plan: p }}\n" +
                                        "  - { name: outside, plan: p, ip: 192.0.2.10 }\n  - { name: good2, plan: p }\n");
        var result = Host.Vsctl("apply", mixed);
        result.Code.ShouldBe(1);
        result.Stdout.ShouldContain("outside: FAILED at 'create (plan p)'");
        result.Stdout.ShouldContain("2 created, 0 changed, 0 unchanged, 0 removed, 1 failed");
        Guests().Select(g => g.GetProperty("name").GetString()).ShouldBe(["good1", "good2"], ignoreOrder: true);
        Host.ShouldHaveNoTraceOf("outside");
    }
}
