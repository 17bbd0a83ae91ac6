using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class StopCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var timeout = new Option<string?>("--timeout", "-t")
        {
            Description = "Seconds to wait after SIGTERM before killing the guest [default: the agent's]",
            HelpName = "SECONDS",
        };
        var command = new Command("stop", "Stop a running guest") { name, timeout };
        command.SetAction((parse, ct) =>
            cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, parse.GetValue(timeout), cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, string? timeout, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var seconds = Input.NonNegativeInt("--timeout", timeout, "timeout");
        var guest = await client.StopAsync(name, seconds, ct);
        stdout.WriteLine($"stopped {Escaped.Name(guest.Name)}");
        return ExitCodes.Ok;
    }
}
