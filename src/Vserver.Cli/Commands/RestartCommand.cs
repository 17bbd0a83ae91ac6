using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class RestartCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var command = new Command("restart", "Stop a guest if it runs, then start it") { name };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.RestartAsync(name, ct);
        stdout.WriteLine(guest.InitPid is { } pid ? $"restarted {guest.Name} (pid {pid})" : $"restarted {guest.Name}");
        return ExitCodes.Ok;
    }
}
