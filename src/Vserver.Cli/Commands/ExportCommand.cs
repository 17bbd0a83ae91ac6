using System.CommandLine;
using Vserver.Api;
using Vserver.Cli.Hosting;

namespace Vserver.Cli.Commands;

/// <summary>`vsctl export [-o FILE]`: the host's guests as a hosting file for `vsctl apply`.</summary>
internal static class ExportCommand
{
    public static Command Create(CliContext cli)
    {
        var output = new Option<string?>("--output", "-o") { Description = "Write the file here [default: standard output]", HelpName = "FILE" };
        var command = new Command("export", "Write this host's guests as a hosting file (plans and servers) for vsctl apply") { output };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(output), cli, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string? output, CliContext cli, CancellationToken ct)
    {
        var list = await client.ListAsync(ct);
        var yaml = HostingExport.Write(list.Guests.Select(CurrentServer.From).ToList());
        foreach (var warning in list.Warnings) cli.Err.WriteLine($"vsctl: left out: {Escaped.Text(warning)}");
        foreach (var broken in list.Guests.Where(g => g.State == "broken")) cli.Err.WriteLine($"vsctl: left out broken guest {Escaped.Name(broken.Name)}: {Escaped.Text(broken.Problem)}");
        if (output is null)
        {
            cli.Out.Write(yaml);
            return ExitCodes.Ok;
        }
        try
        {
            var temp = $"{output}.tmp-{Environment.ProcessId}";
            await File.WriteAllTextAsync(temp, yaml, ct);
            File.Move(temp, output, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliFailureException($"cannot write {output}: {e.Message}");
        }
        cli.Out.WriteLine($"wrote {output}: {list.Guests.Count(g => g.State != "broken")} servers");
        return ExitCodes.Ok;
    }
}
