using Vserver.Cli;

return await Vsctl.RunAsync(args, CliContext.ForConsole());
