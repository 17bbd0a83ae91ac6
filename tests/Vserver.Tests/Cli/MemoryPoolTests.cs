using System.Text.Json;
using Shouldly;
using Vserver.Api;
using Vserver.Cli.Commands;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>The memory pool in vsctl: --memory-min, host set, stat and top, against hand-built answers and a fake agent.</summary>
public class MemoryPoolTests
{
    private const long M = 1L << 20;
    private const long G = 1L << 30;

    private static readonly GuestStat Web1 = new()
    {
        Name = "web1", Kind = "vserver", State = "running", Processes = 12,
        RssBytes = 300 * M, FairBytes = 200 * M, PrivateBytes = 150 * M, SharedBytes = 150 * M, SwapBytes = 0,
        ChargedBytes = 220 * M, LimitBytes = 512 * M, GuaranteeBytes = 128 * M, CpuPercent = 12.345,
    };

    private static readonly GuestStat Db = new()
    {
        Name = "db", Kind = "vserver", State = "running", Processes = 40,
        RssBytes = 1536 * M, FairBytes = 1 * G, PrivateBytes = 900 * M, SharedBytes = 600 * M, SwapBytes = 10 * M,
        LimitBytes = null, GuaranteeBytes = null, CpuPercent = 50,
    };

    private static readonly GuestStat Vm1 = new()
    {
        Name = "vm1", Kind = "domain", State = "running", Processes = 1,
        RssBytes = 260 * M, FairBytes = 250 * M, PrivateBytes = 250 * M, SharedBytes = 10 * M, SwapBytes = 0,
        LimitBytes = 256 * M, GuaranteeBytes = 64 * M, CpuPercent = 3.04,
        BalloonBytes = 180 * M, BalloonTargetBytes = 192 * M, KsmBytes = 20 * M,
    };

    // used 6G = guests' fair (200M + 1G + 250M = 1474M) + host own 4.5G + unaccounted 62M.
    private static readonly StatHost Host = new()
    {
        TotalBytes = 16 * G, UsedBytes = 6 * G, CapacityBytes = 14 * G, CommittedBytes = 192 * M,
        GuestsBytes = 1474 * M, HostOwnBytes = 4608 * M, UnaccountedBytes = 62 * M, ToleranceBytes = 256 * M,
        SharedSavingsBytes = 622 * M, Ksm = true, KsmSavingsBytes = 20 * M, FreeBytes = 7 * G,
    };

    private static readonly StatReport Report = new() { Host = Host, Guests = [Web1, Db, Vm1] };

    private static readonly string[] ReportLines =
    [
        "NAME   TYPE      STATE     PROCS   RSS    PSS/FAIR   PRIVATE   SHARED   SWAP   LIMIT   GUARANTEE   CPU%",
        "web1   vserver   running   12      300M   200M       150M      150M     0      512M    128M        12.3",
        "db     vserver   running   40      1.5G   1G         900M      600M     10M    -       -           50.0",
        "vm1    domain    running   1       260M   250M       250M      10M      0      256M    64M         3.0",
        "domain vm1: balloon 180M of 192M target, KSM merged 20M",
        "host: total 16G, used 6G = guests' fair 1.4G + host own 4.5G + unaccounted 62M (within ±256M)",
        "pool: capacity 14G, committed 192M (1%), free 7G; shared pages save 622M, KSM saves 20M",
    ];

    private static readonly HostInfo HostInfo = new()
    {
        Version = "0.1", CgroupVersion = "2", Bridge = "vsbr0", Subnet = "10.88.0.0/16", StateRoot = "/var/lib/vserver", RunRoot = "/run/vserver",
        AgentPid = 9, Cpus = 8, MemoryBytes = 16 * G,
        Pool = new PoolInfo
        {
            CapacityBytes = 14 * G, ReserveBytes = 2 * G, Overcommit = 1.5, CommittedBytes = 192 * M, LimitsBytes = 3 * G, LimitsCapBytes = 21 * G,
            UsedBytes = 6 * G, FreeBytes = 7 * G, MinFreeBytes = 512 * M, Ksm = true, KsmSavedBytes = 20 * M,
        },
    };

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();

    [Fact]
    public void Stat_table_has_every_column_sizes_in_short_form_and_a_summary_that_adds_up()
    {
        var output = new StringWriter { NewLine = "\n" };

        StatCommand.Write(Report, output);

        output.ToString().ShouldBe(string.Join("\n", ReportLines) + "\n");
    }

    [Fact]
    public void Stat_summary_says_pressure_ksm_off_a_negative_free_pool_and_an_unaccounted_share_beyond_tolerance()
    {
        var host = Host with
        {
            UnaccountedBytes = -300 * M, Ksm = false, KsmSavingsBytes = 0, FreeBytes = -(64 * M), UnderPressure = true,
            Notes = ["vm1: balloon target 256M -> 192M", "web1 is 72M over its guarantee\nand was asked to give it back"],
        };

        StatCommand.Summary(host).ShouldBe([
            "host: total 16G, used 6G = guests' fair 1.4G + host own 4.5G + unaccounted -300M (beyond ±256M)",
            "pool: capacity 14G, committed 192M (1%), free -64M, under pressure; shared pages save 622M, KSM off",
            "note: vm1: balloon target 256M -> 192M",
            "note: web1 is 72M over its guarantee; and was asked to give it back",
        ]);
    }

    [Fact]
    public void A_domain_without_balloon_readings_and_a_vserver_get_no_balloon_note()
    {
        StatCommand.BalloonNote(Web1).ShouldBeNull();
        StatCommand.BalloonNote(Vm1 with { BalloonBytes = null, BalloonTargetBytes = null }).ShouldBeNull();
        StatCommand.BalloonNote(Vm1 with { KsmBytes = null }).ShouldBe("domain vm1: balloon 180M of 192M target");
    }

    [Fact]
    public async Task Stat_asks_for_the_named_guests_and_prints_the_view()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(Report, ApiJson.Default.StatReport);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "stat", "web1", "vm1")).ShouldBe(0);

        cli.OutLines.ShouldBe(ReportLines);
        cli.Err.ToString().ShouldBeEmpty();
        var request = agent.Requests.ShouldHaveSingleItem();
        $"{request.Method} {request.Path}".ShouldBe("GET /v1/stat?name=web1&name=vm1");
    }

    [Fact]
    public async Task Stat_json_is_the_report()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(Report, ApiJson.Default.StatReport);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "stat", "-f", "json")).ShouldBe(0);

        agent.Requests.ShouldHaveSingleItem().Path.ShouldBe("/v1/stat");
        var json = cli.Out.ToString();
        json.ShouldContain("\n  \"host\": {");
        var parsed = JsonSerializer.Deserialize(json, ApiJson.Default.StatReport)!;
        JsonSerializer.Serialize(parsed, ApiJson.Default.StatReport).ShouldBe(JsonSerializer.Serialize(Report, ApiJson.Default.StatReport));
    }

    [Fact]
    public async Task Top_off_a_terminal_prints_one_view_per_round_biggest_fair_share_first()
    {
        await using var agent = FakeAgent.Start();
        var rounds = 0;
        // The second answer shows web1 grown past db: the order follows the fair share of each round.
        agent.Handler = _ => FakeResponse.Json(Interlocked.Increment(ref rounds) == 1
            ? Report
            : Report with { Guests = [Web1 with { FairBytes = 2 * G }, Db, Vm1] }, ApiJson.Default.StatReport);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "top", "--interval", "0.01", "--iterations", "2")).ShouldBe(0);

        var views = cli.Out.ToString().ReplaceLineEndings("\n").Split("\n\n");
        views.Length.ShouldBe(2);
        Lines(views[0]).ShouldBe([ReportLines[0], ReportLines[2], ReportLines[3], ReportLines[1], .. ReportLines[4..]]);
        Lines(views[1]).Select(l => l.Split(' ')[0]).Take(4).ShouldBe(["NAME", "web1", "db", "vm1"]);
        Lines(views[1])[1].ShouldContain("   2G   ");
        cli.Out.ToString().ShouldNotContain("\u001b");
        agent.Requests.Select(r => $"{r.Method} {r.Path}").ShouldBe(["GET /v1/stat", "GET /v1/stat"]);
        cli.Err.ToString().ShouldBeEmpty();
    }

    [Fact]
    public async Task Top_on_a_terminal_redraws_one_screen_and_gives_the_screen_back()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(Report, ApiJson.Default.StatReport);
        var cli = new CliHarness();
        cli.Terminal.StdoutIsTerminal = true;
        cli.Terminal.WindowSize = (40, 200);

        (await cli.RunAsync(agent.SocketPath, "top", "-d", "0.01", "-n", "2")).ShouldBe(0);

        var output = cli.Out.ToString();
        output.ShouldStartWith("\u001b[?1049h");
        output.ShouldEndWith("\u001b[?1049l");
        output.Split("\u001b[H").Length.ShouldBe(3); // two frames, each drawn from the top left corner
        output.ShouldContain("vsctl top - 12:00:00, every 0.01 s, 3 guests; Ctrl-C quits\u001b[K\n");
        output.ShouldContain("db     vserver   running   40 ");
    }

    [Fact]
    public void A_top_frame_fits_the_terminal()
    {
        var frame = TopCommand.Frame(Report, TimeSpan.FromSeconds(2), new FixedClock(CliHarness.Now), (5, 30));

        frame.ShouldStartWith("\u001b[H");
        frame.ShouldEndWith("\u001b[J");
        var lines = frame["\u001b[H".Length..^"\u001b[J".Length].Split("\u001b[K\n", StringSplitOptions.None)[..^1];
        lines.Length.ShouldBe(4);
        lines.ShouldAllBe(l => l.Length <= 29);
        lines[0].ShouldBe("vsctl top - 12:00:00, every 2");
        lines[2].ShouldStartWith("NAME   TYPE");
        lines[3].ShouldStartWith("db     vserver");
    }

    [Fact]
    public async Task Create_and_set_send_the_memory_guarantee()
    {
        await using var agent = FakeAgent.Start();
        var guest = new GuestInfo { Name = "web1", Kind = "vserver", State = "stopped", MemoryBytes = 256 * M, MemoryMinBytes = 64 * M, Cpus = 1 };
        agent.Handler = _ => FakeResponse.Json(guest, ApiJson.Default.GuestInfo);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "create", "web1", "--memory", "256M", "--memory-min", "64M")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "set", "web1", "--memory-min", "0.5G")).ShouldBe(0);

        cli.OutLines.ShouldBe(["created web1 (vserver)", "updated web1: memory 256M, memory min 64M, cpus 1, pids -, restart no, autostart off"]);
        var requests = agent.Requests.ToArray();
        JsonSerializer.Deserialize(requests[0].Body, ApiJson.Default.GuestSpec).ShouldBe(
            new GuestSpec { Name = "web1", MemoryBytes = 256 * M, MemoryMinBytes = 64 * M });
        $"{requests[1].Method} {requests[1].Path}".ShouldBe("PATCH /v1/guests/web1/limits");
        requests[1].Body.ShouldBe($$"""{"memoryMinBytes":{{G / 2}}}""");
    }

    [Fact]
    public void A_domains_update_line_names_its_balloon_floor()
    {
        var vm1 = new GuestInfo
        {
            Name = "vm1", Kind = "domain", State = "running", MemoryBytes = 192 * M, MaxMemoryBytes = 256 * M, MemoryMinBytes = 64 * M,
        };
        SetCommand.Describe(vm1).ShouldBe("updated vm1: memory 192M (balloon target, live; maximum 256M), memory min 64M");
    }

    [Fact]
    public async Task Host_set_sends_only_the_settings_given_and_shows_the_host()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(HostInfo, ApiJson.Default.HostInfo);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "host", "set", "--overcommit", "1.5", "--ksm", "on", "--reserve", "2G")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "host", "set", "--min-free", "512M", "--ksm", "off")).ShouldBe(0);

        agent.Requests.Select(r => $"{r.Method} {r.Path} {r.Body}").ShouldBe([
            $$"""PATCH /v1/host {"reserveBytes":{{2 * G}},"overcommit":1.5,"ksm":true}""",
            $$"""PATCH /v1/host {"minFreeBytes":{{512 * M}},"ksm":false}""",
        ]);
        cli.OutLines.ShouldContain("pool capacity:  14G (memory - reserve)");
        cli.OutLines.ShouldContain("committed:      192M of 14G (1%): the guarantees, of the capacity");
        cli.OutLines.ShouldContain("limits:         3G of 21G (14%): the limits, of capacity x overcommit");
        cli.OutLines.ShouldContain("pressure:       no");
        cli.OutLines.ShouldContain("ksm:            on, saving 20M");
        cli.OutLines.Count(l => l.StartsWith("version:", StringComparison.Ordinal)).ShouldBe(2);
    }

    [Fact]
    public async Task Host_and_host_set_speak_json()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(HostInfo, ApiJson.Default.HostInfo);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "host", "-f", "json")).ShouldBe(0);
        var first = cli.Out.ToString();
        (await cli.RunAsync(agent.SocketPath, "host", "set", "--ksm", "on", "-f", "json")).ShouldBe(0);

        JsonSerializer.Deserialize(first, ApiJson.Default.HostInfo).ShouldBe(HostInfo);
        JsonSerializer.Deserialize(cli.Out.ToString()[first.Length..], ApiJson.Default.HostInfo).ShouldBe(HostInfo);
        first.ShouldContain("\"pool\": {");
        agent.Requests.Select(r => r.Method).ShouldBe(["GET", "PATCH"]);
    }
}
