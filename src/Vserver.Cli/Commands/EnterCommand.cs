using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class EnterCommand
{
    public static readonly IReadOnlyList<string> Shell = ["/bin/sh", "-l"];

    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var command = new Command("enter", "Open a login shell in a running guest (exec -t NAME -- /bin/sh -l)") { name };
        command.SetAction((parse, ct) =>
            cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, ExecIo.From(cli), cli.Err, ct)));
        return command;
    }

    public static Task<int> HandleAsync(AgentClient client, string name, ExecIo io, TextWriter stderr, CancellationToken ct) =>
        ExecCommand.HandleAsync(client, new ExecCommand.Options { Name = name, Command = Shell, TtyIfTerminal = true }, io, stderr, ct);
}
