using Shouldly;
using Vserver.Api;
using Vserver.Cli.Hosting;
using Xunit;

namespace Vserver.Tests.Cli;

public sealed class HostingTests
{
    private const string Example = """
        plans:
          small: { memory: 128M, memory-min: 32M, cpus: 0.5, pids: 200, disk: 256M }
          big:
            memory: 512M
            cpus: 2
          vm: { kind: domain, memory: 256M, cpus: 1.5 }
        servers:
          - { name: web1, plan: small, ports: ["8080:80", "5353:53/udp"], restart: on-failure }
          - name: web2
            plan: big
            ip: 10.0.0.20
          - { name: db1, plan: vm, running: false }
        """;

    private static HostingFile Parse(string text) => HostingFile.Parse(text, "hosting.yaml");

    private static string ErrorOf(string text) => Should.Throw<HostingFileException>(() => Parse(text)).Message;

    [Fact]
    public void A_file_gives_plans_and_servers_with_their_settings()
    {
        var file = Parse(Example);
        file.Plans.Keys.ShouldBe(["small", "big", "vm"], ignoreOrder: true);
        var small = file.Plans["small"];
        small.MemoryBytes.ShouldBe(128L << 20);
        small.MemoryMinBytes.ShouldBe(32L << 20);
        small.Cpus.ShouldBe(0.5);
        small.Pids.ShouldBe(200);
        small.DiskBytes.ShouldBe(256L << 20);
        small.Kind.ShouldBe("vserver");
        small.Image.ShouldBe("busybox");
        file.Plans["vm"].DomainVcpus.ShouldBe(2);
        file.Servers.Select(s => s.Name).ShouldBe(["web1", "web2", "db1"]);
        file.Servers[0].Ports.ShouldBe([new PortInfo(8080, 80, "tcp"), new PortInfo(5353, 53, "udp")]);
        file.Servers[0].Restart.ShouldBe("on-failure");
        file.Servers[1].Ipv4.ShouldBe("10.0.0.20");
        file.Servers[1].Restart.ShouldBe("no");
        file.Servers[2].Running.ShouldBeFalse();
    }

    [Theory]
    [InlineData("plans: {}\nservers:\n  - { name: a, plan: nosuch }", "hosting.yaml:3:22: server 'a': unknown plan 'nosuch' (plans: none)")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p }\n  - { name: a, plan: p }", "hosting.yaml:4:5: duplicate server name 'a' (first at line 3)")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p, ports: [\"80:80\"] }\n  - { name: b, plan: p, ports: [\"80:8080\"] }", "host port 80/tcp of 'b' is also published by 'a'")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p, ports: [\"80:80\", \"80:81/tcp\"] }", "host port 80/tcp is listed twice")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p, ports: [\"70000:80\"] }", "invalid port '70000:80'")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p, ports: [\"80:80/sctp\"] }", "the protocol is tcp or udp")]
    [InlineData("plans: { p: { memory: lots } }", "hosting.yaml:1:23: plan 'p': memory:")]
    [InlineData("plans: { p: { memroy: 1G } }", "unknown key 'memroy' in plan 'p'")]
    [InlineData("plans: { p: { kind: container } }", "kind must be vserver or domain")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p, ip: 10.0.0.9 }\n  - { name: b, plan: p, ip: 10.0.0.9 }", "address 10.0.0.9 of 'b' is also 'a''s")]
    [InlineData("plans: { p: {} }\nservers:\n  - { name: a, plan: p, restart: sometimes }", "restart must be no, on-failure or always")]
    [InlineData("plans: { p: {} }\nservers:\n  - { plan: p }", "a server needs a name")]
    [InlineData("plans:\n  p: {}\n servers: []", "hosting.yaml:3:")]
    [InlineData("plans: [a, b]", "'plans' must map plan names")]
    [InlineData("plans:\n  p: { memory: 64M\nservers: []\n", "hosting.yaml:2:")]
    [InlineData("hosts: []", "unknown key 'hosts' in the hosting file")]
    public void Every_mistake_is_one_line_with_the_file_line_and_column(string text, string expected)
    {
        var message = ErrorOf(text);
        message.ShouldContain(expected);
        message.ShouldStartWith("hosting.yaml:");
        message.ShouldNotContain("\n");
    }

    private static CurrentServer Guest(string name, string kind = "vserver", string state = "running", long? memory = 128L << 20,
        double? cpus = 0.5, IReadOnlyList<PortInfo>? ports = null, string restart = "on-failure") => new()
    {
        Name = name, Kind = kind, Image = "busybox", State = state, Ipv4 = "10.0.0.5", MemoryBytes = memory, MemoryMinBytes = 32L << 20,
        Cpus = kind == "vserver" ? cpus : null, Pids = kind == "vserver" ? 200 : null, DiskBytes = kind == "vserver" ? 256L << 20 : 2L << 30,
        Vcpus = kind == "domain" ? 2 : null, Kernel = kind == "domain" ? "default" : null, Restart = restart,
        Ports = ports ?? [new PortInfo(8080, 80, "tcp"), new PortInfo(5353, 53, "udp")],
    };

    [Fact]
    public void A_host_that_matches_the_file_needs_nothing_and_a_missing_server_is_created_ported_and_started()
    {
        var file = Parse(Example);
        var plans = ApplyPlanner.Plan(file, [Guest("web1")], prune: false);
        plans[0].Action.ShouldBe(ServerAction.Unchanged);
        plans[0].Summary.ShouldBe("unchanged");
        plans[1].Action.ShouldBe(ServerAction.Create);
        plans[1].Steps.Select(s => s.Text).ShouldBe(["create (plan big)", "start"]);
        var create = (ApplyStep.Create)plans[1].Steps[0];
        create.Request.Ipv4.ShouldBe("10.0.0.20");
        create.Request.MemoryBytes.ShouldBe(512L << 20);
        create.Request.Cpus.ShouldBe(2);
        // A domain: its cpus become vcpus; running: false, so it is not started.
        plans[2].Steps.Select(s => s.Text).ShouldBe(["create (plan vm)"]);
        ((ApplyStep.Create)plans[2].Steps[0]).Request.Vcpus.ShouldBe(2);
    }

    [Fact]
    public void Differences_become_live_changes_and_ports_are_added_and_removed()
    {
        var file = Parse(Example);
        var now = Guest("web1", memory: 64L << 20, cpus: 1, ports: [new PortInfo(8080, 80, "tcp"), new PortInfo(9000, 90, "tcp")], restart: "no");
        var plan = ApplyPlanner.Plan(file, [now], prune: false)[0];
        plan.Action.ShouldBe(ServerAction.Change);
        plan.Summary.ShouldBe("memory 64M -> 128M, cpus 1 -> 0.5, restart no -> on-failure (live), unpublish 9000:90/tcp, publish 5353:53/udp");
        var set = (ApplyStep.SetLimits)plan.Steps[0];
        set.Request.MemoryBytes.ShouldBe(128L << 20);
        set.Request.Cpus.ShouldBe(0.5);
        set.Request.Pids.ShouldBeNull();
        set.Request.Restart.ShouldBe("on-failure");
    }

    [Fact]
    public void A_running_domain_with_new_ram_is_restarted_and_a_stopped_server_started()
    {
        var file = Parse(Example.Replace("running: false", "running: true", StringComparison.Ordinal));
        var domain = Guest("db1", kind: "domain", memory: 128L << 20, restart: "no", ports: []);
        var plans = ApplyPlanner.Plan(file, [domain, Guest("web1", state: "stopped")], prune: false);
        plans[0].Steps.Select(s => s.Text).ShouldBe(["start"]);
        plans[2].Steps.Select(s => s.Text).ShouldBe(["stop", "memory 128M -> 256M (a domain's RAM: restarted)", "start"]);
    }

    [Fact]
    public void What_apply_cannot_change_is_refused_per_server_with_what_to_do()
    {
        var file = Parse(Example);
        ApplyPlanner.Plan(file, [Guest("web1", kind: "domain")], prune: false)[0].Refusal!.ShouldContain("vsctl demote web1");
        ApplyPlanner.Plan(file, [Guest("web2") with { Ipv4 = "10.0.0.21" }], prune: false)[1].Refusal!.ShouldContain("the file says 10.0.0.20");
        ApplyPlanner.Plan(file, [Guest("web1") with { DiskBytes = 1L << 30 }], prune: false)[0].Refusal!.ShouldContain("a quota only grows");
        ApplyPlanner.Plan(file, [Guest("web1") with { DiskBytes = null }], prune: false)[0].Refusal!.ShouldContain("a quota is chosen at creation");
        ApplyPlanner.Plan(file, [Guest("web1") with { Image = "debian" }], prune: false)[0].Refusal!.ShouldContain("image 'debian'");
    }

    [Fact]
    public void Prune_removes_exactly_the_guests_the_file_does_not_list()
    {
        var file = Parse(Example);
        var current = new[] { Guest("web1"), Guest("old1"), Guest("old2", state: "stopped") };
        ApplyPlanner.Plan(file, current, prune: false).ShouldNotContain(p => p.Action == ServerAction.Prune);
        ApplyPlanner.Plan(file, current, prune: true).Where(p => p.Action == ServerAction.Prune).Select(p => p.Name).ShouldBe(["old1", "old2"]);
    }

    [Fact]
    public void An_export_applied_to_the_host_it_came_from_changes_nothing()
    {
        var guests = new[]
        {
            Guest("web1"), Guest("web2", ports: []) with { Ipv4 = "10.0.0.6" },
            Guest("web3", memory: 256L << 20, restart: "no", ports: []) with { Ipv4 = "10.0.0.7", Autostart = true },
            Guest("db1", kind: "domain", state: "stopped", ports: [new PortInfo(5432, 5432, "tcp")]) with { Ipv4 = "10.0.0.8" },
        };
        var yaml = HostingExport.Write(guests);
        yaml.ShouldContain("restart: \"no\"");
        yaml.ShouldContain("autostart: true");
        var file = Parse(yaml);
        file.Plans.Count.ShouldBe(3, yaml);
        file.Plans.Keys.ShouldContain("vserver-128m");
        ApplyPlanner.Plan(file, guests, prune: true).ShouldAllBe(p => p.Action == ServerAction.Unchanged, yaml);
    }

    [Fact]
    public void Autostart_is_a_server_flag_changed_in_place()
    {
        var file = Parse(Example.Replace("restart: on-failure }", "restart: on-failure, autostart: true }", StringComparison.Ordinal));
        file.Servers[0].Autostart.ShouldBeTrue();
        file.Servers[1].Autostart.ShouldBeFalse();
        var plans = ApplyPlanner.Plan(file, [Guest("web1")], prune: false);
        plans[0].Steps.Select(s => s.Text).ShouldBe(["autostart false -> true (live)"]);
        ErrorOf(Example.Replace("restart: on-failure }", "autostart: sometimes }", StringComparison.Ordinal))
            .ShouldContain("server 'web1': autostart must be true or false, not 'sometimes'");
    }

    [Fact]
    public async Task Values_are_the_agents_call_asked_by_one_check_of_the_whole_plan_before_anything_changes()
    {
        var path = Path.Combine(Path.GetTempPath(), $"hosting-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, "plans:\n  p: { memory: 64M, memory-min: 1G }\n  v: { vcpus: 2 }\nservers:\n" +
                                "  - { name: Web_1, plan: v }\n  - { name: ok1, plan: p, ip: 10.0.0 }\n");
        await using var agent = FakeAgent.Start();
        agent.Handler = r => r switch
        {
            { Method: "GET", Path: "/v1/guests" } => FakeResponse.Json(new Vserver.Api.GuestList { Guests = [] }, Vserver.Api.ApiJson.Default.GuestList),
            { Method: "POST", Path: "/v1/plans/check" } => FakeResponse.Json(new Vserver.Api.PlanCheckReport
            {
                Guests =
                [
                    new()
                    {
                        Name = "Web_1",
                        Refusal = new()
                        {
                            Error = "invalid name 'Web_1': guest names are DNS labels", Code = Vserver.Api.ErrorCodes.InvalidValue,
                            Fields = new Dictionary<string, string> { ["field"] = "name", ["value"] = "Web_1", ["reason"] = "malformed" },
                        },
                    },
                    new()
                    {
                        Name = "ok1",
                        Refusal = new()
                        {
                            Error = "invalid IPv4 address '10.0.0': write it as A.B.C.D", Code = Vserver.Api.ErrorCodes.InvalidValue,
                            Fields = new Dictionary<string, string> { ["field"] = "ipv4", ["value"] = "10.0.0", ["reason"] = "malformed" },
                        },
                    },
                ],
            }, Vserver.Api.ApiJson.Default.PlanCheckReport),
            _ => FakeResponse.Error(500, $"unexpected {r.Method} {r.Path}"),
        };
        var cli = new CliHarness();
        try
        {
            (await cli.RunAsync(agent.SocketPath, "apply", path)).ShouldBe(1);
        }
        finally
        {
            File.Delete(path);
        }

        cli.OutLines.ShouldContain("Web_1: FAILED at 'create (plan v)': invalid name 'Web_1': guest names are DNS labels");
        cli.OutLines.ShouldContain("ok1: FAILED at 'create (plan p)': invalid IPv4 address '10.0.0': write it as A.B.C.D");
        // The vcpus of a vserver plan go to the agent, which refuses them by name.
        var check = agent.Requests.Single(r => r.Path == "/v1/plans/check");
        check.Body.ShouldContain("\"name\":\"Web_1\"");
        check.Body.ShouldContain("\"vcpus\":2");
        agent.Requests.ShouldNotContain(r => r.Method == "POST" && r.Path == "/v1/guests", "a refused server must not be created");
    }
}
