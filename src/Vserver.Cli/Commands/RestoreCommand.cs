using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary><c>vsctl restore FILE</c> (as <c>xl restore</c>): the saved domain back under its name and address, running where it stopped.</summary>
internal static class RestoreCommand
{
    public static Command Create(CliContext cli)
    {
        var file = new Argument<string>("FILE") { Description = "A file written by vsctl save, on the agent's host" };
        var command = new Command("restore", "Recreate a saved domain and resume it where it was saved") { file };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            HandleAsync(client, parse.GetValue(file)!, Directory.GetCurrentDirectory(), cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string file, string currentDirectory,
        TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var path = SaveCommand.AbsolutePath(file, currentDirectory);
        var guest = await client.RestoreAsync(path, ct);
        stdout.WriteLine($"restored {Escaped.Name(guest.Name)} ({guest.State})");
        return ExitCodes.Ok;
    }
}
