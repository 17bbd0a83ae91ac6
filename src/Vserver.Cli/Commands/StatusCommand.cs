using System.CommandLine;
using System.Globalization;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class StatusCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var format = SharedOptions.Format("text");
        var command = new Command("status", "Show a guest's configuration, state and resource usage") { name, format };
        command.SetAction((parse, ct) =>
            cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, parse.GetValue(format), cli.Clock, cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, string? format, TimeProvider clock,
        TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var json = Input.IsJson(format, "text");
        var guest = await client.GetAsync(name, ct);
        if (json) Display.Json(stdout, guest, ApiJson.Default.GuestInfo);
        else Write(guest, clock, stdout);
        return ExitCodes.Ok;
    }

    public static void Write(GuestInfo g, TimeProvider clock, TextWriter stdout)
    {
        var lines = new List<(string, string)>
        {
            ("name", Display.Name(g.Name)),
            ("type", g.Kind),
            ("state", g.State),
        };
        if (!string.IsNullOrEmpty(g.Problem))
        {
            lines.Add(("problem", g.Problem));
            if (g.State == "broken") lines.Add(("repair", AgentErrorText.BrokenAdvice(g.Name)));
        }
        if (GuestKinds.IsDomain(g)) AddDomain(g, clock, lines);
        else AddVserver(g, clock, lines);
        Display.KeyValues(stdout, lines);
    }

    private static string Address(GuestInfo g) => g.Ipv4 is null ? Display.None
        : g.Routed ? $"{g.Ipv4} (routed: its own public address, reached without NAT)" : g.Ipv4;

    private static string Dns(GuestInfo g) => g.Problem is not null ? Display.None : g.Dns switch
    {
        null => "the host's resolver on the bridge (names of guests: NAME.<suffix>)",
        { Count: 0 } => "none written: the guest's own /etc/resolv.conf",
        var servers => string.Join(", ", servers),
    };

    private static void AddVserver(GuestInfo g, TimeProvider clock, List<(string, string)> lines)
    {
        lines.AddRange(
        [
            ("image", Display.Text(g.Image)),
            ("ipv4", Address(g)),
            .. PortsLine(g),
            ("dns", Dns(g)),
            ("memory limit", Display.Bytes(g.MemoryBytes)),
            ("memory min", Guarantee(g.MemoryMinBytes, "soft limit")),
            ("cpus", Display.Number(g.Cpus)),
            ("pids limit", Display.Number(g.Pids)),
            ("restart", Display.Text(g.Restart)),
            ("autostart", g.Problem is not null ? Display.None : g.Autostart ? "yes: started when the host boots" : "no"),
            ("privileged", g.Problem is not null ? Display.None : g.Privileged ? "yes: root inside is root on the host" : "no"),
            ("host ids", g.HostIdBase is { } b && g.HostIdCount is { } n
                ? string.Create(CultureInfo.InvariantCulture, $"{b}-{b + n - 1} (0-{n - 1} inside)") : Display.None),
            ("syscalls", g.Problem is not null ? Display.None
                : g.AllowSyscalls is { Count: > 0 } a ? $"default filter, also allowed: {string.Join(", ", a)}" : "default filter"),
            ("command", g.Command is { Count: > 0 } c ? ShellWords.Join(c) : Display.None),
            ("disk", Disk(g)),
            ("init pid", Display.Number(g.InitPid)),
        ]);
        AddHistory(g, clock, lines);
        if (g.Usage is { } u)
        {
            lines.AddRange(
            [
                ("memory", Display.Bytes(u.MemoryBytes)),
                ("memory peak", Display.Bytes(u.MemoryPeakBytes)),
                ("processes", Display.Number(u.Processes)),
                ("cpu seconds", u.CpuSeconds.ToString("0.00", CultureInfo.InvariantCulture)),
                ("oom kills", Display.Number(u.OomKills)),
            ]);
        }
        else
        {
            lines.Add(("usage", Display.None));
        }
    }

    /// <summary>A domain has no privileged mode, host ids, syscall filter, process limit or init command of its own.</summary>
    private static void AddDomain(GuestInfo g, TimeProvider clock, List<(string, string)> lines)
    {
        lines.AddRange(
        [
            ("accelerator", Display.Text(g.Accelerator)),
            ("kernel", Display.Text(g.Kernel)),
            ("vcpus", Display.Number(g.Vcpus)),
            ("memory target", Display.Bytes(g.MemoryBytes)),
            ("max memory", Display.Bytes(g.MaxMemoryBytes)),
            ("memory min", Guarantee(g.MemoryMinBytes, "balloon floor")),
            ("root", g.Root switch
            {
                "virtiofs" => "virtiofs (the files it had as a vserver, shared in place)",
                "ext4" => "ext4 image (a copy of the files it had as a vserver)",
                var r => Display.Text(r is null ? null : $"{r} (qcow2 over its image)"),
            }),
            ("disk", g.Root == "virtiofs" ? Disk(g) : Display.Bytes(g.DiskBytes)),
            ("image", Display.Text(g.Image)),
            ("ipv4", Address(g)),
            .. PortsLine(g),
            ("dns", Dns(g)),
            ("mac", Display.Text(g.Mac)),
            ("restart", Display.Text(g.Restart)),
            ("autostart", g.Problem is not null ? Display.None : g.Autostart ? "yes: started when the host boots" : "no"),
            ("qemu pid", Display.Number(g.InitPid)),
        ]);
        AddHistory(g, clock, lines);
        if (g.Usage is { } u)
        {
            lines.AddRange(
            [
                ("memory", Display.Bytes(u.MemoryBytes)),
                ("cpu seconds", u.CpuSeconds.ToString("0.00", CultureInfo.InvariantCulture)),
            ]);
        }
    }

    /// <summary>Published ports, when the guest has some.</summary>
    private static IEnumerable<(string, string)> PortsLine(GuestInfo g) =>
        g.Ports is { Count: > 0 } ? [("ports", PortCommand.Summary(g.Ports))] : [];

    /// <summary>A disk quota and its use: "1.2M of 64M used, 55M free" while the layer is mounted (the guest runs).</summary>
    public static string Disk(GuestInfo g)
    {
        if (g.Problem is not null) return Display.None;
        if (g.DiskBytes is not { } quota) return "no quota";
        var use = g.DiskUsedBytes is { } used && g.DiskFreeBytes is { } free
            ? $"{ByteSize.Format(used)} of {ByteSize.Format(quota)} used, {ByteSize.Format(free)} free"
            : $"{ByteSize.Format(quota)} quota (use shown while it runs)";
        return use + PendingGrow(g);
    }

    /// <summary>A grow that waits for the next start (the agent could not grow the mounted layer).</summary>
    public static string PendingGrow(GuestInfo g) =>
        g.DiskCurrentBytes is { } now && g.DiskBytes is { } quota && now < quota
            ? $" (the layer is {ByteSize.Format(now)} until its next start, which grows it to {ByteSize.Format(quota)})"
            : "";

    /// <summary>The memory guarantee and how the kind of guest keeps it.</summary>
    private static string Guarantee(long? bytes, string how) => bytes is { } b ? $"{ByteSize.Format(b)} (guaranteed: {how})" : Display.None;

    private static void AddHistory(GuestInfo g, TimeProvider clock, List<(string, string)> lines)
    {
        lines.AddRange(
        [
            ("created", Display.Time(g.Created, clock)),
            ("started", Display.Time(g.StartedAt, clock)),
            ("last exit", g.LastExit is { } e ? $"{e.Description} at {Display.Time(e.At, clock)}" : Display.None),
            ("restarts", Display.Number(g.RestartCount)),
        ]);
        foreach (var entry in g.History ?? []) lines.Add(("history", entry));
    }
}
