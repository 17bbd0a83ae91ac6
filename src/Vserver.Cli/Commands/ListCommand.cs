using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class ListCommand
{
    public static Command Create(CliContext cli)
    {
        var format = SharedOptions.Format("table");
        var command = new Command("list", "List the guests") { format };
        command.Aliases.Add("ls");
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(format), cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(AgentClient client, string? format, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var json = Input.IsJson(format, "table");
        var list = await client.ListAsync(ct);
        Write(list, json, stdout, stderr);
        return ExitCodes.Ok;
    }

    public static void Write(GuestList list, bool json, TextWriter stdout, TextWriter stderr)
    {
        foreach (var warning in list.Warnings) stderr.WriteLine($"vsctl: warning: {Escaped.Text(warning)}");
        if (json)
        {
            Display.Json(stdout, list.Guests, ApiJson.Default.IReadOnlyListGuestInfo);
            return;
        }
        TextTable.Write(stdout, ["NAME", "TYPE", "STATE", "ACCEL", "IPV4", "MEMORY", "CPUS", "IMAGE", "PRIVILEGED"],
            list.Guests.Select(g =>
            {
                var domain = GuestKinds.IsDomain(g);
                return new[]
                {
                    Display.Name(g.Name), g.Kind, g.State,
                    domain ? Accelerators.Short(g.Accelerator) : null,
                    g.Ipv4,
                    // A domain's MemoryBytes is its balloon target, what it may use now.
                    g.MemoryBytes is { } m ? ByteSize.Format(m) : null,
                    domain ? (g.Vcpus is { } v ? Display.Number(v) : null) : g.Cpus is { } c ? Display.Number(c) : null,
                    g.Image,
                    domain || g.Problem is not null ? null : g.Privileged ? "yes" : "no",
                };
            }));
        var emulated = list.Guests.FirstOrDefault(g => GuestKinds.IsDomain(g) && Accelerators.IsEmulated(g.Accelerator));
        if (emulated is not null) stdout.WriteLine(Accelerators.EmulationNote(emulated.Accelerator));
    }
}
