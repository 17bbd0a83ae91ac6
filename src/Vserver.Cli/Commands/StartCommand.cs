using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class StartCommand
{
    public static Command Create(CliContext cli) =>
        GuestNameCommand.Create(cli, "start", "Start a stopped guest", HandleAsync);

    public static async Task<int> HandleAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var guest = await client.StartAsync(name, ct: ct);
        stdout.WriteLine(guest.InitPid is { } pid ? $"started {Escaped.Name(guest.Name)} (pid {pid})" : $"started {Escaped.Name(guest.Name)}");
        return ExitCodes.Ok;
    }
}
