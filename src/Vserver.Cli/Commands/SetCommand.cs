using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class SetCommand
{
    public static Command Create(CliContext cli)
    {
        var name = Common.GuestName();
        var memory = Common.Memory("for a running domain, a live balloon target within its maximum (stopped: the RAM of its next boot)");
        var cpus = Common.Cpus();
        var pids = Common.Pids();
        var command = new Command("set",
            "Change a guest's resource limits (applied at once if it runs); a domain has only --memory, set live by its balloon")
        {
            name, memory, cpus, pids,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!,
            parse.GetValue(memory), parse.GetValue(cpus), parse.GetValue(pids), cli.Out, cli.Err, ct)));
        return command;
    }

    public static SetLimitsRequest ToRequest(string? memory, string? cpus, string? pids)
    {
        if (memory is null && cpus is null && pids is null)
            throw new UsageException("set needs at least one of --memory, --cpus, --pids");
        return new SetLimitsRequest
        {
            MemoryBytes = Input.Size("--memory", memory),
            Cpus = Input.Cpus("--cpus", cpus),
            Pids = Input.PositiveInt("--pids", pids, "process limit"),
        };
    }

    public static async Task<int> HandleAsync(VserverClient client, string name, string? memory, string? cpus, string? pids,
        TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var request = ToRequest(memory, cpus, pids);
        var guest = await client.SetLimitsAsync(name, request, ct);
        stdout.WriteLine(Describe(guest));
        return ExitCodes.Ok;
    }

    public static string Describe(GuestInfo guest)
    {
        if (guest.Kind != GuestKinds.Domain)
            return $"updated {guest.Name}: memory {Display.Bytes(guest.MemoryBytes)}, cpus {Display.Number(guest.Cpus)}, pids {Display.Number(guest.Pids)}";
        // The agent balloons a running domain and changes a stopped one's RAM (see Fleet.SetDomainMemoryLockedAsync).
        return guest.State is "running" or "paused"
            ? $"updated {guest.Name}: memory {Display.Bytes(guest.MemoryBytes)} (balloon target, live; maximum {Display.Bytes(guest.MaxMemoryBytes)})"
            : $"updated {guest.Name}: memory {Display.Bytes(guest.MemoryBytes)} (its RAM from the next start)";
    }
}
