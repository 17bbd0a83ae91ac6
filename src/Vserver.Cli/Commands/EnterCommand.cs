using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class EnterCommand
{
    /// <summary>root's login shell as su -l starts it (HOME, SHELL, USER, LOGNAME, the home directory, the distribution's
    /// profile and, under systemd, a login session), or /bin/sh -l in a guest without su.</summary>
    public static readonly IReadOnlyList<string> Shell =
        ["/bin/sh", "-c", "if command -v su >/dev/null 2>&1; then exec su -l root; else cd ~ 2>/dev/null; exec /bin/sh -l; fi"];

    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName();
        var command = new Command("enter", "Open root's login shell in a running guest (su -l, or /bin/sh -l where there is no su)") { name };
        command.SetAction((parse, ct) =>
            cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(name)!, ExecIo.From(cli), cli.Err, ct)));
        return command;
    }

    public static Task<int> HandleAsync(AgentClient client, string name, ExecIo io, TextWriter stderr, CancellationToken ct) =>
        ExecCommand.HandleAsync(client, new ExecCommand.Options { Name = name, Command = Shell, TtyIfTerminal = true }, io, stderr, ct);
}
