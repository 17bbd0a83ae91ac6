using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// The verbs whose one argument is the guest's name (start, restart, pause, resume): the agent acts on the guest and the
/// verb's handler says what became of it.
/// </summary>
internal static class GuestNameCommand
{
    public delegate Task<int> Handler(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct);

    public static Command Create(CliContext cli, string verb, string description, Handler handle)
    {
        var name = SharedOptions.GuestName();
        var command = new Command(verb, description) { name };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => handle(client, parse.GetValue(name)!, cli.Out, cli.Err, ct)));
        return command;
    }
}
