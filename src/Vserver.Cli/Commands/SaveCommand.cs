using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary><c>vsctl save NAME FILE</c> (as <c>xl save</c>): a running domain's state and disk into one file; the domain is then gone until restore.</summary>
internal static class SaveCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName("The running domain to save");
        var file = new Argument<string>("FILE") { Description = "The save file to write, on the agent's host; it must not exist yet" };
        var command = new Command("save", "Save a running domain to a file (memory, devices, disk, config); it is gone from the host until vsctl restore")
        {
            name, file,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            HandleAsync(client, parse.GetValue(name)!, parse.GetValue(file)!, Directory.GetCurrentDirectory(), cli.Out, cli.Err, ct)));
        return command;
    }

    /// <summary>The agent runs elsewhere (its own working directory), so a relative path is made absolute against vsctl's.</summary>
    public static string AbsolutePath(string file, string currentDirectory)
    {
        if (string.IsNullOrWhiteSpace(file)) throw new UsageException("FILE: give the save file's path");
        return Path.GetFullPath(file, currentDirectory);
    }

    public static async Task<int> HandleAsync(AgentClient client, string name, string file, string currentDirectory,
        TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var path = AbsolutePath(file, currentDirectory);
        var saved = await client.SaveAsync(name, path, ct);
        stdout.WriteLine($"saved {Escaped.Name(name)} to {Escaped.Name(saved.File)} ({ByteSize.Format(saved.SizeBytes)})");
        return ExitCodes.Ok;
    }
}
