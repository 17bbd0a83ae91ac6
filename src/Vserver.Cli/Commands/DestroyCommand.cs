using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class DestroyCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var force = new Option<bool>("--force", "-f") { Description = "Destroy a running guest too (it is killed first)" };
        var command = new Command("destroy", "Delete a guest and its files") { name, force };
        command.SetAction((parse, ct) =>
            cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, parse.GetValue(force), cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, bool force, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        await client.DestroyAsync(name, force, ct);
        stdout.WriteLine($"destroyed {Escaped.Name(name)}");
        return ExitCodes.Ok;
    }
}
