using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class ResumeCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var command = new Command("resume", "Resume a paused guest: a vserver's processes are thawed, a domain's vCPUs run again (as xl unpause)") { name };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.ResumeAsync(name, ct);
        stdout.WriteLine($"resumed {guest.Name}");
        return ExitCodes.Ok;
    }
}
