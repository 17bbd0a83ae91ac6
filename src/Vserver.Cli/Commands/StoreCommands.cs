using System.CommandLine;
using System.Text.Json.Serialization.Metadata;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// The list and rm subcommands of what the agent builds and keeps by name (images, kernels): the same verbs, aliases,
/// formats and answers for each.
/// </summary>
internal static class StoreCommands
{
    public static Command List<T>(CliContext cli, string description, Func<AgentClient, CancellationToken, Task<IReadOnlyList<T>>> fetch,
        JsonTypeInfo<IReadOnlyList<T>> jsonType, Action<IReadOnlyList<T>, TimeProvider, TextWriter> writeTable)
    {
        var format = SharedOptions.Format("table");
        var list = new Command("list", description) { format };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            ListAsync(client, parse.GetValue(format), fetch, jsonType, writeTable, cli.Clock, cli.Out, ct)));
        return list;
    }

    public static Command Remove(CliContext cli, string noun, string description, string nameDescription,
        Func<AgentClient, string, CancellationToken, Task> remove)
    {
        var name = new Argument<string>("NAME") { Description = nameDescription };
        var rm = new Command("rm", description) { name };
        rm.Aliases.Add("remove");
        rm.SetAction((parse, ct) => cli.RunAsync(parse, client => RemoveAsync(client, noun, parse.GetValue(name)!, remove, cli.Out, ct)));
        return rm;
    }

    public static async Task<int> ListAsync<T>(AgentClient client, string? format, Func<AgentClient, CancellationToken, Task<IReadOnlyList<T>>> fetch,
        JsonTypeInfo<IReadOnlyList<T>> jsonType, Action<IReadOnlyList<T>, TimeProvider, TextWriter> writeTable, TimeProvider clock,
        TextWriter stdout, CancellationToken ct)
    {
        var json = Input.IsJson(format, "table");
        var items = await fetch(client, ct);
        if (json) Display.Json(stdout, items, jsonType);
        else writeTable(items, clock, stdout);
        return ExitCodes.Ok;
    }

    public static async Task<int> RemoveAsync(AgentClient client, string noun, string name, Func<AgentClient, string, CancellationToken, Task> remove,
        TextWriter stdout, CancellationToken ct)
    {
        Input.StoreName(noun, name);
        try
        {
            await remove(client, name, ct);
        }
        catch (ApiException e) when (e.Code == ErrorCodes.KernelMissing)
        {
            // Its words list the kernels there are; "build it with" is advice for a domain that lacks one, not for rm.
            throw new CliFailureException(e.Message);
        }
        stdout.WriteLine($"removed {noun} {Escaped.Name(name)}");
        return ExitCodes.Ok;
    }
}
