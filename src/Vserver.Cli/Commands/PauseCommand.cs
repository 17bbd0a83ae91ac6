using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class PauseCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var command = new Command("pause", "Pause a running guest: a vserver's processes are frozen (freezer cgroup), a domain's vCPUs are stopped (as xl pause)") { name };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.PauseAsync(name, ct);
        stdout.WriteLine($"paused {guest.Name}");
        return ExitCodes.Ok;
    }
}
