using System.Globalization;
using Vserver.Api;
using Vserver.Cli.Commands;

namespace Vserver.Cli.Hosting;

/// <summary>A guest as the host has it now, in the hosting file's terms.</summary>
public sealed record CurrentServer
{
    public required string Name { get; init; }
    public required string Kind { get; init; }
    public string? Image { get; init; }
    /// <summary>running | stopped | paused | crashed | broken</summary>
    public required string State { get; init; }
    public string? Ipv4 { get; init; }
    /// <summary>A vserver's limit, a domain's RAM.</summary>
    public long? MemoryBytes { get; init; }
    public long? MemoryMinBytes { get; init; }
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    public long? DiskBytes { get; init; }
    public string? Kernel { get; init; }
    public int? Vcpus { get; init; }
    public string Restart { get; init; } = "no";
    public bool Autostart { get; init; }
    public IReadOnlyList<PortInfo> Ports { get; init; } = [];

    public static CurrentServer From(GuestInfo g) => new()
    {
        Name = g.Name,
        Kind = g.Kind,
        Image = g.Image,
        State = g.State,
        Ipv4 = g.Ipv4,
        MemoryBytes = g.Kind == GuestKinds.Domain ? g.MaxMemoryBytes : g.MemoryBytes,
        MemoryMinBytes = g.MemoryMinBytes,
        Cpus = g.Cpus,
        Pids = g.Pids,
        DiskBytes = g.DiskBytes,
        Kernel = g.Kernel,
        Vcpus = g.Vcpus,
        Restart = g.Restart ?? "no",
        Autostart = g.Autostart,
        Ports = PortsOf(g),
    };

    private static List<PortInfo> PortsOf(GuestInfo g) =>
        (g.Ports ?? []).ToList();
}

/// <summary>What apply does to one guest, in order.</summary>
public abstract record ApplyStep(string Text)
{
    public sealed record Create(GuestSpec Request, string Plan) : ApplyStep($"create ({Plan})");
    public sealed record SetLimits(SetLimitsRequest Request, string Change) : ApplyStep(Change);
    public sealed record AddPort(PortInfo Port) : ApplyStep($"publish {Port}");
    public sealed record RemovePort(PortInfo Port) : ApplyStep($"unpublish {Port}");
    public sealed record Start() : ApplyStep("start");
    public sealed record Stop(string Why) : ApplyStep(Why);
    public sealed record Destroy() : ApplyStep("destroy (not in the file: --prune)");
}

/// <summary>One guest's part of the plan: its steps, or why apply cannot make it what the file says.</summary>
public sealed record ServerPlan(string Name, ServerAction Action, IReadOnlyList<ApplyStep> Steps, string? Refusal = null)
{
    /// <summary>The steps as one line: "memory 128M -> 256M (live), publish 8080:80/tcp".</summary>
    public string Summary => Refusal ?? (Steps.Count == 0 ? "unchanged" : string.Join(", ", Steps.Select(s => s.Text)));
}

public enum ServerAction { Create, Change, Unchanged, Prune, Refused }

/// <summary>
/// The difference between a hosting file and the host, per guest: pure logic, so applying the same file twice plans
/// nothing the second time. A setting a plan leaves out is left as the guest has it.
/// </summary>
public static class ApplyPlanner
{
    public static IReadOnlyList<ServerPlan> Plan(HostingFile file, IReadOnlyList<CurrentServer> current, bool prune)
    {
        var byName = current.ToDictionary(c => c.Name, StringComparer.Ordinal);
        var plans = new List<ServerPlan>();
        foreach (var server in file.Servers)
        {
            var plan = file.Plans[server.Plan];
            plans.Add(byName.TryGetValue(server.Name, out var now) ? Change(server, plan, now) : Create(server, plan));
        }
        if (prune)
        {
            var listed = file.Servers.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
            plans.AddRange(current.Where(c => !listed.Contains(c.Name)).OrderBy(c => c.Name, StringComparer.Ordinal)
                .Select(c => new ServerPlan(c.Name, ServerAction.Prune, [new ApplyStep.Destroy()])));
        }
        return plans;
    }

    private static ServerPlan Create(HostingServer server, HostingPlan plan)
    {
        var request = new GuestSpec
        {
            Name = server.Name,
            Kind = plan.Kind,
            Image = plan.Image,
            MemoryBytes = plan.MemoryBytes,
            MemoryMinBytes = plan.MemoryMinBytes,
            Cpus = plan.Kind == "domain" ? null : plan.Cpus,
            Pids = plan.Kind == "domain" ? null : plan.Pids,
            DiskBytes = plan.DiskBytes,
            Kernel = plan.Kernel,
            Vcpus = plan.DomainVcpus,
            Ipv4 = server.Ipv4,
            Restart = server.Restart,
            Autostart = server.Autostart,
        };
        var steps = new List<ApplyStep> { new ApplyStep.Create(request, $"plan {plan.Name}") };
        steps.AddRange(server.Ports.Select(p => new ApplyStep.AddPort(p)));
        if (server.Running) steps.Add(new ApplyStep.Start());
        return new ServerPlan(server.Name, ServerAction.Create, steps);
    }

    private static ServerPlan Change(HostingServer server, HostingPlan plan, CurrentServer now)
    {
        ServerPlan Refuse(string why) => new(server.Name, ServerAction.Refused, [], why);
        if (now.State == "broken") return Refuse($"its config is broken on the host; fix or destroy it (vsctl status {server.Name})");
        if (now.Kind != plan.Kind)
            return Refuse(now.Kind == "vserver"
                ? $"it is a vserver and plan '{plan.Name}' makes domains: vsctl promote {server.Name}, then apply again"
                : $"it is a domain and plan '{plan.Name}' makes vservers: vsctl demote {server.Name}, then apply again");
        if (now.Image is { } image && image != plan.Image && now.Kind == "vserver")
            return Refuse($"it runs image '{image}', plan '{plan.Name}' says '{plan.Image}': an image is chosen at creation; destroy it to recreate it");
        if (server.Ipv4 is { } ip && now.Ipv4 != ip)
            return Refuse($"its address is {now.Ipv4 ?? "none"}, the file says {ip}: an address is chosen at creation; destroy it to recreate it");

        var steps = new List<ApplyStep>();
        var running = now.State is "running" or "paused";
        var limits = new SetLimitsRequest();
        var changes = new List<string>();
        void Differs(string what, string from, string to) => changes.Add($"{what} {from} -> {to}");

        if (plan.MemoryBytes is { } memory && memory != now.MemoryBytes)
        {
            limits = limits with { MemoryBytes = memory };
            Differs("memory", Size(now.MemoryBytes), Size(memory));
        }
        if (plan.MemoryMinBytes is { } min && min != now.MemoryMinBytes)
        {
            limits = limits with { MemoryMinBytes = min };
            Differs("memory-min", Size(now.MemoryMinBytes), Size(min));
        }
        var restartDomain = false;
        if (plan.Kind == "vserver")
        {
            if (plan.Cpus is { } cpus && cpus != now.Cpus)
            {
                limits = limits with { Cpus = cpus };
                Differs("cpus", Number(now.Cpus), Number(cpus));
            }
            if (plan.Pids is { } pids && pids != now.Pids)
            {
                limits = limits with { Pids = pids };
                Differs("pids", Number(now.Pids), Number(pids));
            }
            if (plan.DiskBytes is { } disk && disk != now.DiskBytes)
            {
                if (now.DiskBytes is { } have && disk < have)
                    return Refuse($"its disk quota is {Size(have)}, plan '{plan.Name}' says {Size(disk)}: a quota only grows");
                if (now.DiskBytes is null)
                    return Refuse($"it has no disk quota and plan '{plan.Name}' gives {Size(disk)}: a quota is chosen at creation; destroy it to recreate it");
                limits = limits with { DiskBytes = disk };
                Differs("disk", Size(now.DiskBytes), Size(disk));
            }
        }
        else
        {
            if (plan.DomainVcpus is { } vcpus && vcpus != now.Vcpus)
                return Refuse($"it has {Number(now.Vcpus)} vcpus, plan '{plan.Name}' gives {vcpus}: a domain's vcpus are chosen at creation; destroy it to recreate it");
            if (plan.DiskBytes is { } disk && now.DiskBytes is { } have && disk != have)
                return Refuse($"its root disk is {Size(have)}, plan '{plan.Name}' says {Size(disk)}: a domain's disk is chosen at creation");
            if (plan.Kernel is { } kernel && now.Kernel is { } k && kernel != k)
                return Refuse($"it boots kernel '{k}', plan '{plan.Name}' says '{kernel}': a domain's kernel is chosen at creation");
            // A running domain's RAM is fixed at boot: a new size needs a stop and a start.
            restartDomain = running && limits.MemoryBytes is not null;
        }
        if (server.Restart != now.Restart)
        {
            limits = limits with { Restart = server.Restart };
            Differs("restart", now.Restart, server.Restart);
        }
        if (server.Autostart != now.Autostart)
        {
            limits = limits with { Autostart = server.Autostart };
            Differs("autostart", now.Autostart ? "true" : "false", server.Autostart ? "true" : "false");
        }
        if (changes.Count > 0)
        {
            var how = !running ? "" : restartDomain ? " (a domain's RAM: restarted)" : " (live)";
            if (restartDomain) steps.Add(new ApplyStep.Stop("stop"));
            steps.Add(new ApplyStep.SetLimits(limits, string.Join(", ", changes) + how));
            if (restartDomain && server.Running) steps.Add(new ApplyStep.Start());
        }

        var wanted = server.Ports.ToHashSet();
        var published = now.Ports.ToHashSet();
        steps.AddRange(now.Ports.Where(p => !wanted.Contains(p)).Select(p => new ApplyStep.RemovePort(p)));
        steps.AddRange(server.Ports.Where(p => !published.Contains(p)).Select(p => new ApplyStep.AddPort(p)));

        var willRun = restartDomain ? server.Running : running;
        if (server.Running && !willRun && now.State != "paused") steps.Add(new ApplyStep.Start());
        if (!server.Running && running && !restartDomain) steps.Add(new ApplyStep.Stop("stop (running: false)"));
        return new ServerPlan(server.Name, steps.Count == 0 ? ServerAction.Unchanged : ServerAction.Change, steps);
    }

    private static string Size(long? bytes) => bytes is { } b ? ByteSize.Format(b) : "none";

    private static string Number(double? value) => value?.ToString("0.##", CultureInfo.InvariantCulture) ?? "none";
}
