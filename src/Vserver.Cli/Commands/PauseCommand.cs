using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class PauseCommand
{
    public static Command Create(CliContext cli) =>
        GuestNameCommand.Create(cli, "pause", "Pause a running guest: a vserver's processes are frozen (freezer cgroup), a domain's vCPUs are stopped (as xl pause)", HandleAsync);

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.PauseAsync(name, ct);
        stdout.WriteLine($"paused {Escaped.Name(guest.Name)}");
        return ExitCodes.Ok;
    }
}
