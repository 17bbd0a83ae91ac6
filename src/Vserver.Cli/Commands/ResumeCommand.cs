using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class ResumeCommand
{
    public static Command Create(CliContext cli) =>
        GuestNameCommand.Create(cli, "resume", "Resume a paused guest: a vserver's processes are thawed, a domain's vCPUs run again (as xl unpause)", HandleAsync);

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.ResumeAsync(name, ct);
        stdout.WriteLine($"resumed {Escaped.Name(guest.Name)}");
        return ExitCodes.Ok;
    }
}
