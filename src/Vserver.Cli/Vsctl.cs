using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using Vserver.Cli.Commands;

namespace Vserver.Cli;

/// <summary>The vsctl command tree and its invocation.</summary>
internal static class Vsctl
{
    public static RootCommand BuildRoot(CliContext cli)
    {
        var root = new RootCommand("vsctl: control the guests of this host (vservers and domains) through its agent, vserverd")
        {
            CreateCommand.Create(cli),
            StartCommand.Create(cli),
            StopCommand.Create(cli),
            RestartCommand.Create(cli),
            DestroyCommand.Create(cli),
            PauseCommand.Create(cli),
            ResumeCommand.Create(cli),
            ExecCommand.Create(cli),
            EnterCommand.Create(cli),
            ListCommand.Create(cli),
            StatusCommand.Create(cli),
            StatCommand.Create(cli),
            TopCommand.Create(cli),
            SetCommand.Create(cli),
            ApplyCommand.Create(cli),
            ExportCommand.Create(cli),
            ConsoleCommand.Create(cli),
            SaveCommand.Create(cli),
            RestoreCommand.Create(cli),
            PromoteCommand.Create(cli),
            PromoteCommand.CreateDemote(cli),
            ImageCommand.Create(cli),
            KernelCommand.Create(cli),
            HostCommand.Create(cli),
            PortCommand.Create(cli),
            CompletionCommand.Create(cli),
        };
        root.Subcommands.Add(CompletionCommand.CreateComplete(() => root, cli));
        root.Options.Add(cli.SocketOption);
        return root;
    }

    /// <summary>"vsctl host set": the words that name a command.</summary>
    private static string CommandPath(CommandResult command)
    {
        var words = new List<string>();
        for (SymbolResult? at = command; at is CommandResult c; at = c.Parent)
            words.Insert(0, c.Parent is null ? "vsctl" : c.Command.Name);
        return string.Join(' ', words);
    }

    /// <summary>Parses and runs; System.CommandLine's own parse errors (with help) exit 2 like vsctl's usage errors.</summary>
    public static async Task<int> RunAsync(string[] args, CliContext cli)
    {
        var parse = BuildRoot(cli).Parse(args);
        // A verb's parse error in one line; a group of verbs (vsctl, vsctl kernel) given a wrong one still shows its list.
        if (parse.Errors.Count > 0 && parse.CommandResult.Command.Subcommands.Count == 0)
            return cli.Fail(ExitCodes.Usage, $"{parse.Errors[0].Message.TrimEnd('.')}; see: {CommandPath(parse.CommandResult)} --help");
        var config = new InvocationConfiguration
        {
            EnableDefaultExceptionHandler = false, // no stack traces: CliContext.RunAsync turns failures into one line
            ProcessTerminationTimeout = null,      // exec handles its signals itself; elsewhere Ctrl-C just ends vsctl
        };
        if (!cli.IsProcessConsole)
        {
            config.Output = cli.Out;
            config.Error = cli.Err;
        }
        try
        {
            var code = await parse.InvokeAsync(config);
            return parse.Action is ParseErrorAction ? ExitCodes.Usage : code;
        }
        catch (Exception e)
        {
            return cli.Fail(ExitCodes.Failed, e.Message);
        }
    }
}
