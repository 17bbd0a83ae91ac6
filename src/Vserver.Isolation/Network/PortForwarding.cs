using System.ComponentModel;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Serialization;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Network;

[JsonConverter(typeof(JsonStringEnumConverter<PortProtocol>))]
public enum PortProtocol
{
    [JsonStringEnumMemberName("tcp")] Tcp,
    [JsonStringEnumMemberName("udp")] Udp,
}

public static class PortProtocols
{
    public static string Name(PortProtocol protocol) => protocol == PortProtocol.Udp ? "udp" : "tcp";

    public static bool TryParse(string? text, out PortProtocol protocol)
    {
        protocol = PortProtocol.Tcp;
        switch (text)
        {
            case null or "" or "tcp": return true;
            case "udp": protocol = PortProtocol.Udp; return true;
            default: return false;
        }
    }
}

/// <summary>Everything the agent keeps on the host for its guests' network beside the bridge: the published ports,
/// outbound NAT of the guest subnet, the routed range (in its nftables table), and the route and proxy neighbour entry on
/// <see cref="Uplink"/> of each guest address of that range (<see cref="RoutedAddresses"/>).</summary>
public sealed record HostRules(Ipv4Subnet Subnet, IReadOnlyList<PortForward> Forwards, bool Nat, Ipv4Subnet? Routed = null,
    string? Uplink = null, IReadOnlyList<IPAddress>? RoutedGuests = null);

/// <summary>One published port: <see cref="HostPort"/> on every address of the host (127.0.0.1 included) reaches
/// <see cref="GuestPort"/> on the guest's address. <see cref="Owner"/> names the guest in the rule's comment.</summary>
public sealed record PortForward(PortProtocol Protocol, int HostPort, IPAddress Guest, int GuestPort, string Owner);

/// <summary>
/// The published ports of one agent, and its guests' way out (outbound NAT), as an nftables table of its own, <c>ip vserver_BRIDGE</c>: named after the agent's
/// bridge, so agents with their own bridges (tests run several side by side) never touch each other's rules, and
/// nothing else on the host is touched at all. The table is always rewritten whole, in one nft transaction, from the
/// guests' configs: applying it twice changes nothing, and a failed apply leaves the previous rules in place.
/// </summary>
/// <remarks>
/// What each chain is for:
/// <list type="bullet">
/// <item>prerouting: DNAT of connections from other machines (and from guests) to a host address and published port.</item>
/// <item>output: the same for connections the host itself opens, 127.0.0.1 included; locally made packets never pass
/// prerouting.</item>
/// <item>postrouting: a packet from 127.0.0.1 cannot leave through the bridge as it is: the kernel routes it there only
/// with route_localnet on the bridge, and the guest could not answer it. It is masqueraded to the bridge's address.
/// Connections from a guest to another guest's published port through the host are masqueraded too, so the answer comes
/// back through the host (without it the guests would talk past the DNAT, unless br_netfilter happens to catch it).</item>
/// <item>postrouting, with outbound NAT on: what the guest subnet sends out of any interface but the bridge leaves with
/// the host's address on that interface (masquerade), as lxc-net and Incus's managed bridges do.</item>
/// <item>forward, with outbound NAT off: a connection a guest of the subnet opens to anything beyond the bridge is
/// dropped; answers to connections that came in (published ports) still go out. Guests then reach the host and each
/// other only. Guests with routed addresses are not held in: their addresses are their own.</item>
/// <item>set routed: the range of public addresses the host routes to guests (see <see cref="RoutedAddresses"/>).</item>
/// <item>input: route_localnet also lets a neighbour on the bridge send packets to 127.0.0.0/8 that the host would
/// accept as its own (a domain controls its whole network stack): those are dropped unless they answer a connection
/// the host made (the masqueraded replies). Measured: without this rule a guest reaches a host service bound to
/// 127.0.0.5. The resolver on the gateway address answers only the bridge (and the host itself).</item>
/// </list>
/// </remarks>
public sealed class PortForwarding(HostBridge bridge)
{
    public const string Family = "ip";

    public string Table { get; } = TableFor(bridge.Name);

    /// <summary>The agent's table for a bridge (bridge names are letters, digits, '-', '_' and '.', all of which nft takes
    /// in an identifier after a letter).</summary>
    public static string TableFor(string bridgeName) => "vserver_" + HostBridge.ValidateName(bridgeName);

    /// <summary>The nft script that replaces the table with what <paramref name="rules"/> say. "table" before "delete
    /// table" makes the delete succeed whether the table existed or not. The table is always there: even with nothing
    /// published it guards the resolver, holds the routed range (other agents read it to refuse an overlapping one) and,
    /// with outbound NAT off, keeps guests in.</summary>
    public static string Render(string bridgeName, HostRules rules)
    {
        var table = TableFor(bridgeName);
        var text = new StringBuilder();
        text.Append(Deletion(table));
        text.Append(CultureInfo.InvariantCulture, $"table {Family} {table} {{\n");
        text.Append(CultureInfo.InvariantCulture, $"\tset {RoutedSet} {{\n\t\ttype ipv4_addr\n\t\tflags interval\n");
        if (rules.Routed is { } routed) text.Append(CultureInfo.InvariantCulture, $"\t\telements = {{ {routed} }}\n");
        text.Append("\t}\n");
        var ordered = rules.Forwards.OrderBy(f => f.Protocol).ThenBy(f => f.HostPort).ToList();
        var dnat = ordered.Select(f =>
            $"fib daddr type local {PortProtocols.Name(f.Protocol)} dport {f.HostPort} dnat to {f.Guest}:{f.GuestPort} comment \"{Comment(f.Owner)}\"").ToList();
        if (dnat.Count > 0)
        {
            Chain(text, "prerouting", "type nat hook prerouting priority dstnat; policy accept;", dnat);
            // nft 1.0.6 refuses the name "dstnat" for the output hook; -100 is the same priority.
            Chain(text, "output", "type nat hook output priority -100; policy accept;", dnat);
        }
        Chain(text, "postrouting", "type nat hook postrouting priority srcnat; policy accept;",
        [
            .. dnat.Count > 0
                ? [$"oifname \"{bridgeName}\" ct status dnat ip saddr 127.0.0.0/8 masquerade", $"oifname \"{bridgeName}\" ct status dnat ip saddr {rules.Subnet} masquerade"]
                : Array.Empty<string>(),
            .. rules.Nat ? [Masquerade(bridgeName, rules.Subnet)] : Array.Empty<string>(),
        ]);
        if (!rules.Nat) Chain(text, "forward", "type filter hook forward priority filter; policy accept;", [NoWayOut(bridgeName)]);
        Chain(text, "input", "type filter hook input priority filter; policy accept;",
        [
            $"iifname \"{bridgeName}\" ip daddr 127.0.0.0/8 ct state != {{ established, related }} drop",
            // The resolver answers the bridge only: never a machine that routes to the gateway address through the host.
            $"iifname != {{ \"{bridgeName}\", \"lo\" }} ip daddr {rules.Subnet.Gateway} meta l4proto {{ tcp, udp }} th dport 53 drop",
        ]);
        text.Append("}\n");
        return text.ToString();
    }

    /// <summary>The set in each agent's table that holds its routed range.</summary>
    public const string RoutedSet = "routed";

    /// <summary>Outbound NAT: the guest subnet leaves through any other interface with that interface's address.</summary>
    public static string Masquerade(string bridgeName, Ipv4Subnet subnet) => $"ip saddr {subnet} oifname != \"{bridgeName}\" masquerade";

    /// <summary>Outbound NAT off: a guest of the subnet opens nothing beyond the bridge (routed addresses still do: they
    /// are the guests' own, reached and sending without NAT).</summary>
    private static string NoWayOut(string bridgeName) =>
        $"iifname \"{bridgeName}\" oifname != \"{bridgeName}\" ip saddr != @{RoutedSet} ct state new drop";

    private static void Chain(StringBuilder text, string name, string type, IEnumerable<string> rules)
    {
        text.Append(CultureInfo.InvariantCulture, $"\tchain {name} {{\n\t\t{type}\n");
        foreach (var rule in rules) text.Append(CultureInfo.InvariantCulture, $"\t\t{rule}\n");
        text.Append("\t}\n");
    }

    /// <summary>Guest names are DNS labels; anything else is kept out of the quoted comment all the same.</summary>
    private static string Comment(string owner) => new(owner.Where(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.').ToArray());

    /// <summary>
    /// Makes the host's rules what <paramref name="rules"/> say. With ports the table goes in first and route_localnet
    /// is switched on after it (the input chain must guard 127.0.0.0/8 before the bridge may carry it); without ports
    /// route_localnet goes off first.
    /// </summary>
    public void Apply(HostRules rules)
    {
        var script = Render(bridge.Name, rules);
        if (rules.Forwards.Count == 0) SetRouteLocalnet(false);
        Nft(["-f", "-"], script);
        if (rules.Forwards.Count > 0) SetRouteLocalnet(true);
        // Routing between the bridge and the host's other interfaces: what outbound NAT, routed addresses and a published
        // port reached from another machine need. Never switched off again here: other things on the host may route too.
        if (rules.Nat || rules.Routed is not null || rules.Forwards.Count > 0) EnableForwarding();
    }

    /// <summary>Removes the table (an operator tearing the host's guest network down).</summary>
    public void Remove()
    {
        SetRouteLocalnet(false);
        Delete(Table);
    }

    /// <summary>The tables of every vserver agent on the host (vserver_BRIDGE), by name.</summary>
    public static IReadOnlyList<string> AgentTables()
    {
        var (code, stdout, _) = HostProgram.TryRun("nft", ["list", "tables", Family]);
        if (code != 0) return [];
        // "table ip vserver_vsbr0"
        return stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(l => l.Split(' ')).Where(w => w.Length == 3 && w[2].StartsWith("vserver_", StringComparison.Ordinal)).Select(w => w[2]).ToList();
    }

    /// <summary>Deletes an agent's table by name (one whose agent and bridge are gone).</summary>
    public static void Delete(string table) => Nft(["-f", "-"], Deletion(table));

    /// <summary>The nft lines that delete a table whether it exists or not ("table" first declares it if it does not).</summary>
    private static string Deletion(string table) => $"table {Family} {table}\ndelete table {Family} {table}\n";

    /// <summary>The routed ranges other agents' tables hold (by table name), to refuse one that overlaps them.</summary>
    public static IReadOnlyList<(string Table, string Range)> OtherAgentsRouted(string bridgeName)
    {
        var own = TableFor(bridgeName);
        var found = new List<(string, string)>();
        foreach (var table in AgentTables().Where(t => t != own))
        {
            var (setCode, set, _) = HostProgram.TryRun("nft", ["list", "set", Family, table, RoutedSet]);
            if (setCode != 0) continue;
            var at = set.IndexOf("elements = {", StringComparison.Ordinal);
            if (at < 0) continue;
            var close = set.IndexOf('}', at);
            foreach (var element in set[(at + 12)..close].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                found.Add((table, element.Contains('/', StringComparison.Ordinal) ? element : element + "/32"));
        }
        return found;
    }

    /// <summary>Whether the host routes IPv4 between its interfaces (net.ipv4.ip_forward).</summary>
    public static bool ForwardingOn => File.Exists(IpForward) && File.ReadAllText(IpForward).Trim() == "1";

    private const string IpForward = "/proc/sys/net/ipv4/ip_forward";

    private static void EnableForwarding()
    {
        if (ForwardingOn) return;
        try
        {
            File.WriteAllText(IpForward, "1");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write {IpForward} (IPv4 forwarding, which guests need to reach the world): {e.Message}", e);
        }
    }

    /// <summary>The table as nft lists it, or null when it does not exist.</summary>
    public string? List()
    {
        var (code, stdout, _) = HostProgram.TryRun("nft", ["list", "table", Family, Table]);
        return code == 0 ? stdout : null;
    }

    private void SetRouteLocalnet(bool on)
    {
        var path = $"/proc/sys/net/ipv4/conf/{bridge.Name}/route_localnet";
        try
        {
            File.WriteAllText(path, on ? "1" : "0");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!on && !bridge.Exists) return;
            throw new IOException($"cannot write {path}: {e.Message}", e);
        }
    }

    /// <summary>Runs nft; a failure carries nft's own error lines (not the excerpt and carets it prints below them).</summary>
    private static void Nft(IReadOnlyList<string> args, string? stdin)
    {
        int code;
        string stderr;
        try
        {
            (code, _, stderr) = HostProgram.TryRun("nft", args, stdin);
        }
        catch (Win32Exception e)
        {
            throw new HostProgramException($"nft: cannot run it ({e.Message}); install nftables (apt-get install nftables, or make deps)", -1, "");
        }
        if (code == 0) return;
        var errors = stderr.Split('\n').Select(l => l.Trim()).Where(l => l.Contains("Error:", StringComparison.Ordinal)).ToList();
        var detail = errors.Count > 0 ? string.Join("; ", errors) : stderr.Trim().Length > 0 ? stderr.Trim() : $"exit code {code}";
        throw new HostProgramException($"nft {string.Join(' ', args)}: {detail}", code, stderr);
    }
}
