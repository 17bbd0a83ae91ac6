using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class SetCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var memory = SharedOptions.Memory("for a running domain, a live balloon target within its maximum (stopped: the RAM of its next boot)");
        var memoryMin = SharedOptions.MemoryMin();
        var cpus = SharedOptions.Cpus();
        var pids = SharedOptions.Pids();
        var disk = new Option<string?>("--disk")
        {
            Description = "A vserver's disk quota, grow only (given at create with --disk); a running vserver's grows live where the agent " +
                          "may grow a mounted ext4, else at its next start",
            HelpName = "SIZE",
        };
        var restart = new Option<string?>("--restart") { Description = "Restart policy: no, on-failure or always", HelpName = "POLICY" };
        var autostart = new Option<string?>("--autostart")
        {
            Description = "Whether the agent starts the guest when the host boots: on or off",
            HelpName = "on|off",
            CompletionSources = { "on", "off" },
        };
        var command = new Command("set",
            "Change a guest's resource limits and guarantee (applied at once if it runs); a domain has only --memory (set live by its balloon) and --memory-min")
        {
            name, memory, memoryMin, cpus, pids, disk, restart, autostart,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!,
            new Limits(parse.GetValue(memory), parse.GetValue(memoryMin), parse.GetValue(cpus), parse.GetValue(pids), parse.GetValue(restart),
                parse.GetValue(disk), parse.GetValue(autostart)), cli.Out, cli.Err, ct)));
        return command;
    }

    /// <summary>The options as typed; null is not given.</summary>
    public sealed record Limits(string? Memory = null, string? MemoryMin = null, string? Cpus = null, string? Pids = null, string? Restart = null,
        string? Disk = null, string? Autostart = null);

    public static SetLimitsRequest ToRequest(Limits limits)
    {
        if (limits == new Limits())
            throw new UsageException("set needs at least one of --memory, --memory-min, --cpus, --pids, --disk, --restart, --autostart");
        return new SetLimitsRequest
        {
            MemoryBytes = Input.Size("--memory", limits.Memory),
            MemoryMinBytes = Input.Size("--memory-min", limits.MemoryMin),
            Cpus = Input.Cpus("--cpus", limits.Cpus),
            Pids = Input.PositiveInt("--pids", limits.Pids, "process limit"),
            DiskBytes = Input.Size("--disk", limits.Disk),
            Restart = limits.Restart is null or "no" or "on-failure" or "always"
                ? limits.Restart
                : throw new UsageException($"invalid --restart '{limits.Restart}': use no, on-failure or always"),
            Autostart = Input.OnOff("--autostart", limits.Autostart),
        };
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, Limits limits,
        TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var request = ToRequest(limits);
        var guest = await client.SetLimitsAsync(name, request, ct);
        stdout.WriteLine(Describe(guest));
        return ExitCodes.Ok;
    }

    public static string Describe(GuestInfo guest)
    {
        var min = guest.MemoryMinBytes is { } m ? $", memory min {ByteSize.Format(m)}" : "";
        if (guest.Kind != GuestKinds.Domain)
            return $"updated {Display.Name(guest.Name)}: memory {Display.Bytes(guest.MemoryBytes)}{min}, cpus {Display.Number(guest.Cpus)}, pids {Display.Number(guest.Pids)}, restart {guest.Restart ?? "no"}, autostart {(guest.Autostart ? "on" : "off")}" +
                   (guest.DiskBytes is { } quota ? $", disk {ByteSize.Format(quota)}{StatusCommand.PendingGrow(guest)}" : "");
        // A domain sharing a promoted vserver's files keeps that vserver's disk quota.
        var disk = guest.Root == "virtiofs" && guest.DiskBytes is { } q ? $", disk {ByteSize.Format(q)}{StatusCommand.PendingGrow(guest)}" : "";
        // The agent balloons a running domain and changes a stopped one's RAM (see Fleet.SetDomainMemoryLockedAsync).
        return guest.State is "running" or "paused"
            ? $"updated {Display.Name(guest.Name)}: memory {Display.Bytes(guest.MemoryBytes)} (balloon target, live; maximum {Display.Bytes(guest.MaxMemoryBytes)}){min}{disk}"
            : $"updated {Display.Name(guest.Name)}: memory {Display.Bytes(guest.MemoryBytes)} (its RAM from the next start){min}{disk}";
    }
}
