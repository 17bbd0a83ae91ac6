using System.CommandLine;
using System.Globalization;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// <c>vsctl host</c> (also <c>vsctl info</c>): the agent's settings, what domains run on here and the shared memory pool;
/// <c>vsctl host set</c> changes the pool's settings; <c>vsctl host check [--repair]</c> finds (and removes) what no guest owns.
/// </summary>
internal static class HostCommand
{
    public static Command Create(CliContext cli)
    {
        var format = SharedOptions.Format("text");
        var command = new Command("host",
            "Show the host: the agent's settings, processors, memory, what domains run on (kvm or tcg) and the memory pool guests share")
        {
            format,
            CreateSet(cli),
            CreateCheck(cli),
            CreateTeardown(cli),
        };
        command.Aliases.Add("info");
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(format), cli.Out, cli.Err, ct)));
        return command;
    }

    private static Command CreateSet(CliContext cli)
    {
        var reserve = new Option<string?>("--reserve")
        {
            Description = "Memory kept for the host itself, outside the pool, e.g. 1G (the pool's capacity is the memory minus this)",
            HelpName = "SIZE",
        };
        var overcommit = new Option<string?>("--overcommit")
        {
            Description = "How far the guests' limits may add up beyond the capacity, e.g. 1.5 (their guarantees never add up beyond it)",
            HelpName = "RATIO",
        };
        var minFree = new Option<string?>("--min-free")
        {
            Description = "Free memory in the pool below which it is under pressure and the agent acts on it (balloons, guests above their guarantee)",
            HelpName = "SIZE",
        };
        var ksm = new Option<string?>("--ksm")
        {
            Description = "Kernel same-page merging of identical guest pages: on or off",
            HelpName = "on|off",
            CompletionSources = { "on", "off" },
        };
        var nat = new Option<string?>("--nat")
        {
            Description = "Outbound NAT: guests reach beyond the host, masqueraded to its addresses (on, the default), or only the host and each other (off)",
            HelpName = "on|off",
            CompletionSources = { "on", "off" },
        };
        var routed = new Option<string?>("--routed")
        {
            Description = "Public addresses the upstream routes to this host (or shares on the uplink's link), which guests may hold as their own (vsctl create --ip ADDR): reached and sending without NAT; none takes the range away",
            HelpName = "CIDR|none",
        };
        var uplink = new Option<string?>("--uplink")
        {
            Description = "The interface the routed range arrives on: the host answers ARP there for each guest's routed address",
            HelpName = "IF",
        };
        var dnsDomain = new Option<string?>("--dns-domain")
        {
            Description = "The suffix under which the guests' resolver answers their names (default vserver: db1.vserver)",
            HelpName = "NAME",
        };
        var dnsUpstream = new Option<string?>("--dns-upstream")
        {
            Description = "The name servers the guests' resolver asks, comma-separated, or host for those of the host's /etc/resolv.conf (the default)",
            HelpName = "ADDR[,ADDR]|host",
        };
        var format = SharedOptions.Format("text");
        var command = new Command("set", "Change the memory pool's and the guests' network settings (kept by the agent) and show the host as vsctl host does")
        {
            reserve, overcommit, minFree, ksm, nat, routed, uplink, dnsDomain, dnsUpstream, format,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => SetAsync(client,
            new Settings(parse.GetValue(reserve), parse.GetValue(overcommit), parse.GetValue(minFree), parse.GetValue(ksm), parse.GetValue(nat),
                parse.GetValue(routed), parse.GetValue(uplink), parse.GetValue(dnsDomain), parse.GetValue(dnsUpstream)),
            parse.GetValue(format), cli.Out, cli.Err, ct)));
        return command;
    }

    private static Command CreateTeardown(CliContext cli)
    {
        var command = new Command("teardown",
            "Take the guests' network off this host (the agent's nftables table, routes and proxy ARP entries of routed addresses, " +
            "the resolver, the bridge) and stop the agent; refused while any guest exists. The settings stay: the next agent makes it all again");
        command.SetAction((parse, ct) => cli.RunAsync(parse, async client =>
        {
            var report = await client.TeardownHostAsync(ct);
            foreach (var removed in report.Removed) cli.Out.WriteLine($"removed {Escaped.Text(removed)}");
            cli.Out.WriteLine("the agent stopped; start vserverd to make the guests' network again");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command CreateCheck(CliContext cli)
    {
        var repair = new Option<bool>("--repair") { Description = "Remove what the check finds (processes killed, mounts detached, cgroups, interfaces, directories removed, rules rewritten)" };
        var format = SharedOptions.Format("text");
        var command = new Command("check",
            "List what on this host carries the agent's names but belongs to no guest in the state it is in (left by a crash or by hand): " +
            "processes, mounts, loop devices, cgroups, interfaces, directories, the agent's nftables rules, routes and proxy ARP entries of routed addresses, resolvers. Exit 1 if anything is found (and, with --repair, not removed)")
        {
            repair, format,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => CheckAsync(client, parse.GetValue(repair), parse.GetValue(format), cli.Out, ct)));
        return command;
    }

    public static async Task<int> CheckAsync(AgentClient client, bool repair, string? format, TextWriter stdout, CancellationToken ct)
    {
        var json = Input.IsJson(format, "text");
        var report = await client.CheckHostAsync(repair, ct);
        var clean = report.Orphans.All(o => o.Repaired) && report.Problems.Count == 0;
        if (json)
        {
            Display.Json(stdout, report, ApiJson.Default.HostCheckReport);
            return clean ? ExitCodes.Ok : ExitCodes.Failed;
        }
        if (report.Orphans.Count == 0)
            stdout.WriteLine($"nothing orphaned: {report.Guests} guest{(report.Guests == 1 ? "" : "s")} checked against processes, mounts, loop devices, " +
                             "cgroups, interfaces, directories, nftables rules, routes and resolvers");
        else if (repair)
            TextTable.Write(stdout, ["KIND", "WHAT", "WHY", "REPAIR"],
                report.Orphans.Select(o => (IReadOnlyList<string?>)[o.Kind, o.What, o.Why, o.Repaired ? "removed" : $"failed: {o.Error}"]).ToList());
        else
        {
            TextTable.Write(stdout, ["KIND", "WHAT", "WHY"], report.Orphans.Select(o => (IReadOnlyList<string?>)[o.Kind, o.What, o.Why]).ToList());
            stdout.WriteLine($"{report.Orphans.Count} orphaned; remove them with: vsctl host check --repair");
        }
        if (report.Busy.Count > 0) stdout.WriteLine($"not judged, in the middle of an operation: {string.Join(", ", report.Busy.Select(Escaped.Name))}");
        foreach (var problem in report.Problems) stdout.WriteLine($"problem: {Escaped.Text(problem)}");
        foreach (var broken in report.Broken) stdout.WriteLine($"broken guest {Escaped.Name(broken)}: {AgentErrorText.BrokenAdvice(broken)}");
        return clean ? ExitCodes.Ok : ExitCodes.Failed;
    }

    /// <summary>The options of <c>host set</c> as typed; null is not given.</summary>
    public sealed record Settings(string? Reserve = null, string? Overcommit = null, string? MinFree = null, string? Ksm = null, string? Nat = null,
        string? Routed = null, string? Uplink = null, string? DnsDomain = null, string? DnsUpstream = null);

    public static HostSettingsRequest ToRequest(Settings settings)
    {
        if (settings == new Settings())
            throw new UsageException("host set needs at least one of --reserve, --overcommit, --min-free, --ksm, --nat, --routed, --uplink, --dns-domain, --dns-upstream");
        return new HostSettingsRequest
        {
            ReserveBytes = Input.Size("--reserve", settings.Reserve),
            Overcommit = Input.PositiveNumber("--overcommit", settings.Overcommit, "ratio", "1 or 1.5"),
            MinFreeBytes = Input.Size("--min-free", settings.MinFree),
            Ksm = Input.OnOff("--ksm", settings.Ksm),
            Nat = Input.OnOff("--nat", settings.Nat),
            Routed = settings.Routed == "none" ? "" : Input.NotEmpty("--routed", settings.Routed, "CIDR or none"),
            Uplink = Input.NotEmpty("--uplink", settings.Uplink, "interface name"),
            DnsDomain = Input.NotEmpty("--dns-domain", settings.DnsDomain, "name suffix such as vserver"),
            DnsUpstream = settings.DnsUpstream == "host" ? [] : Input.Addresses("--dns-upstream", settings.DnsUpstream, "host"),
        };
    }

    public static async Task<int> HandleAsync(AgentClient client, string? format, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var json = Input.IsJson(format, "text");
        Show(await client.HostAsync(ct), json, client.SocketPath, stdout);
        return ExitCodes.Ok;
    }

    public static async Task<int> SetAsync(AgentClient client, Settings settings, string? format, TextWriter stdout, TextWriter stderr,
        CancellationToken ct)
    {
        var json = Input.IsJson(format, "text");
        var request = ToRequest(settings);
        Show(await client.SetHostAsync(request, ct), json, client.SocketPath, stdout);
        return ExitCodes.Ok;
    }

    private static void Show(HostInfo host, bool json, string socketPath, TextWriter stdout)
    {
        if (json) Display.Json(stdout, host, ApiJson.Default.HostInfo);
        else Write(host, socketPath, stdout);
    }

    public static void Write(HostInfo host, string socketPath, TextWriter stdout) => Display.KeyValues(stdout,
    [
        ("version", host.Version),
        ("agent pid", host.AgentPid.ToString(CultureInfo.InvariantCulture)),
        ("socket", socketPath),
        ("cpus", host.Cpus > 0 ? host.Cpus.ToString(CultureInfo.InvariantCulture) : Display.None),
        ("memory", host.MemoryBytes > 0 ? ByteSize.Format(host.MemoryBytes) : Display.None),
        ("accelerator", Display.Text(host.Accelerator)),
        ("cgroup version", host.CgroupVersion),
        ("bridge", host.Bridge),
        ("subnet", host.Subnet),
        .. host.Nat is { } nat ? NetworkLines(host, nat) : [],
        ("state root", host.StateRoot),
        ("run root", host.RunRoot),
        .. host.Pool is { } pool ? PoolLines(pool) : [("pool", "not reported by this agent")],
    ]);

    /// <summary>The guests' way out (from an agent that reports it).</summary>
    private static IEnumerable<(string, string)> NetworkLines(HostInfo host, bool nat) =>
    [
        ("outbound", nat
            ? $"NAT: guests reach beyond the host, masqueraded to its addresses (IPv4 forwarding {(host.IpForwarding == true ? "on" : "off")})"
            : "off: guests reach only the host and each other (vsctl host set --nat on)"),
        ("routed", host.Routed is { } range ? $"{range} on uplink {Escaped.Text(host.Uplink ?? "?")}: guests hold these addresses as their own (vsctl create --ip ADDR)" : "none"),
        .. host.Resolver is { } r ? ResolverLines(r) : [],
    ];

    private static IEnumerable<(string, string)> ResolverLines(ResolverInfo r) =>
    [
        ("resolver", r.Problem is { } problem
            ? $"{r.Address}:53 NOT SERVING: {Escaped.Text(problem)}"
            : $"{r.Address}:53 (dnsmasq, pid {r.Pid?.ToString(CultureInfo.InvariantCulture) ?? "?"}): guests' names under .{r.Domain}"),
        ("upstream dns", r.Upstream.Count > 0 ? string.Join(", ", r.Upstream) : "the host's name servers (/etc/resolv.conf)"),
    ];

    private static IEnumerable<(string, string)> PoolLines(PoolInfo p) =>
    [
        ("pool capacity", $"{Display.Bytes(p.CapacityBytes)} (memory - reserve)"),
        ("reserve", $"{Display.Bytes(p.ReserveBytes)} (kept for the host)"),
        ("overcommit", Display.Number(p.Overcommit)),
        ("committed", $"{Display.Share(p.CommittedBytes, p.CapacityBytes)}: the guarantees, of the capacity"),
        ("limits", $"{Display.Share(p.LimitsBytes, p.LimitsCapBytes)}: the limits, of capacity x overcommit"),
        ("used", Display.Bytes(p.UsedBytes)),
        ("free", $"{Display.Bytes(p.FreeBytes)} (in the pool)"),
        ("min free", $"{Display.Bytes(p.MinFreeBytes)} (less free is pressure)"),
        ("pressure", p.UnderPressure ? "yes" : "no"),
        ("ksm", p.Ksm ? $"on, saving {Display.Bytes(p.KsmSavedBytes)}" : "off"),
    ];
}
