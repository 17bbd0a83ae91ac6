using System.CommandLine;
using System.Globalization;
using Vserver.Api;
using Vserver.Cli.Hosting;

namespace Vserver.Cli.Commands;

/// <summary><c>vsctl port add|list|remove</c>: host ports forwarded to a guest's address (vservers and domains alike).</summary>
internal static class PortCommand
{
    public static Command Create(CliContext cli)
    {
        var addName = SharedOptions.GuestName();
        var spec = new Argument<string>("HOSTPORT:GUESTPORT[/tcp|udp]")
        {
            Description = "The host port (on 127.0.0.1 and every address of the host) and the guest's port it reaches; tcp unless /udp",
        };
        var add = new Command("add", "Publish a guest's port on a host port") { addName, spec };
        add.SetAction((parse, ct) => cli.RunAsync(parse, client => AddAsync(client, parse.GetValue(addName)!, parse.GetValue(spec)!, cli.Out, ct)));

        var listName = new Argument<string?>("NAME") { Description = "Only this guest's ports [default: every guest's]", Arity = ArgumentArity.ZeroOrOne };
        var format = SharedOptions.Format("table");
        var list = new Command("list", "List published ports") { listName, format };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => cli.RunAsync(parse, client => ListAsync(client, parse.GetValue(listName), parse.GetValue(format), cli.Out, ct)));

        var removeName = SharedOptions.GuestName();
        var hostPort = new Argument<string>("HOSTPORT[/tcp|udp]") { Description = "The published host port to withdraw; tcp unless /udp" };
        var remove = new Command("remove", "Withdraw a published port") { removeName, hostPort };
        remove.Aliases.Add("rm");
        remove.SetAction((parse, ct) =>
            cli.RunAsync(parse, client => RemoveAsync(client, parse.GetValue(removeName)!, parse.GetValue(hostPort)!, cli.Out, ct)));

        return new Command("port", "Publish guests' ports on the host (nftables DNAT; 127.0.0.1:HOSTPORT reaches the guest)") { add, list, remove };
    }

    /// <summary>HOSTPORT:GUESTPORT[/tcp|udp], as a hosting file writes it.</summary>
    public static PortInfo ParseSpec(string text) =>
        PortInfo.TryParseSpec(text, out var port, out var error) ? port : throw new UsageException(error);

    /// <summary>A published host port: <c>8080</c> or <c>5353/udp</c>.</summary>
    public static (int HostPort, string Protocol) ParseHostPort(string text)
    {
        var (port, protocol) = text.IndexOf('/', StringComparison.Ordinal) is var slash and >= 0
            ? (text[..slash], text[(slash + 1)..].ToLowerInvariant())
            : (text, "tcp");
        if (protocol is not ("tcp" or "udp")) throw new UsageException($"invalid port '{text}': the protocol is tcp or udp");
        if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
            throw new UsageException($"invalid host port '{text}': expected HOSTPORT[/tcp|udp] with a port 1..65535, e.g. 8080 or 5353/udp");
        return (number, protocol);
    }

    public static async Task<int> AddAsync(AgentClient client, string name, string spec, TextWriter stdout, CancellationToken ct)
    {
        var port = ParseSpec(spec);
        var guest = await client.AddPortAsync(name, port, ct);
        stdout.WriteLine($"published {Escaped.Name(name)}: host port {port.HostPort}/{port.Protocol} -> {Escaped.Text(guest.Ipv4 ?? name)}:{port.GuestPort}");
        // What may keep clients away (IPv4 forwarding off) is the host's, not the guest's: asked apart.
        WriteNotes(await client.PortsAsync(name, ct), stdout);
        return ExitCodes.Ok;
    }

    public static async Task<int> ListAsync(AgentClient client, string? name, string? format, TextWriter stdout, CancellationToken ct)
    {
        var json = Input.IsJson(format, "table");
        var list = await client.PortsAsync(name, ct);
        if (json)
        {
            Display.Json(stdout, list, ApiJson.Default.PortList);
            return ExitCodes.Ok;
        }
        Write(list, stdout);
        return ExitCodes.Ok;
    }

    public static void Write(PortList list, TextWriter stdout)
    {
        TextTable.Write(stdout, ["NAME", "PROTO", "HOST PORT", "GUEST"],
            list.Guests.SelectMany(g => g.Ports.Select(p => new[]
            {
                g.Name, p.Protocol, p.HostPort.ToString(CultureInfo.InvariantCulture), $"{g.Ipv4}:{p.GuestPort}",
            })));
        WriteNotes(list, stdout);
    }

    public static async Task<int> RemoveAsync(AgentClient client, string name, string hostPort, TextWriter stdout, CancellationToken ct)
    {
        var (port, protocol) = ParseHostPort(hostPort);
        await client.RemovePortAsync(name, port, protocol, ct);
        stdout.WriteLine($"withdrew {Escaped.Name(name)}: host port {port}/{protocol}");
        return ExitCodes.Ok;
    }

    /// <summary>The guest's ports in <c>vsctl status</c>: <c>8080->80/tcp, 5353->53/udp</c>.</summary>
    public static string Summary(IReadOnlyList<PortInfo>? ports) =>
        ports is { Count: > 0 } ? string.Join(", ", ports.Select(p => $"{p.HostPort}->{p.GuestPort}/{p.Protocol}")) : Display.None;

    private static void WriteNotes(PortList list, TextWriter stdout)
    {
        foreach (var note in list.Notes) stdout.WriteLine($"note: {Escaped.Text(note)}");
    }
}
