using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class RestartCommand
{
    public static Command Create(CliContext cli) =>
        GuestNameCommand.Create(cli, "restart", "Stop a guest if it runs, then start it", HandleAsync);

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.RestartAsync(name, ct);
        stdout.WriteLine(guest.InitPid is { } pid ? $"restarted {Escaped.Name(guest.Name)} (pid {pid})" : $"restarted {Escaped.Name(guest.Name)}");
        return ExitCodes.Ok;
    }
}
