using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class StartCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var command = new Command("start", "Start a stopped guest") { name };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.StartAsync(name, ct: ct);
        stdout.WriteLine(guest.InitPid is { } pid ? $"started {guest.Name} (pid {pid})" : $"started {guest.Name}");
        return ExitCodes.Ok;
    }
}
