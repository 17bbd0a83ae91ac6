using System.Net;
using System.Text.Json;
using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Network;

/// <summary>
/// Public addresses the host routes to guests, as OpenVZ's venet does: the upstream routes the range to the host (or
/// shares the uplink's link with it), and for each guest address the host keeps a route to it through the bridge and
/// answers ARP for it on the uplink (a proxy neighbour entry, `ip neigh add proxy`, which answers only for the addresses
/// listed: never the host's whole routing table, as proxy_arp on the interface would). The guest holds the address as a
/// /32 with an on-link route to the bridge's gateway, so it is reached and sends from it without NAT.
/// </summary>
/// <remarks>
/// Both are made whole from the guests' configs, like the nftables table: <see cref="Apply"/> adds what is missing and
/// removes what no guest has any more. Ours are told apart from anything else by place: host routes on the agent's own
/// bridge other than the kernel's subnet route, and proxy entries on the uplink inside the agent's routed range (two
/// agents' ranges never overlap: that is refused when one is set).
/// </remarks>
public static class RoutedAddresses
{
    /// <summary>The routes and proxy entries for <paramref name="addresses"/>; those of addresses no guest has go.
    /// <paramref name="range"/> null (no routed range) removes every one.</summary>
    public static void Apply(HostBridge bridge, Ipv4Subnet? range, string? uplink, IReadOnlyCollection<IPAddress> addresses)
    {
        var want = addresses.Select(a => a.ToString()).ToHashSet(StringComparer.Ordinal);
        var routes = HostRoutes(bridge);
        foreach (var address in want.Except(routes))
            HostProgram.Run("ip", ["route", "replace", $"{address}/32", "dev", bridge.Name, "proto", "static", "scope", "link"]);
        foreach (var stale in routes.Except(want))
            HostProgram.TryRun("ip", ["route", "del", $"{stale}/32", "dev", bridge.Name]);
        if (uplink is null || range is null) return;
        var proxies = ProxyEntries(uplink, range);
        foreach (var address in want.Except(proxies))
            HostProgram.Run("ip", ["neigh", "replace", "proxy", address, "dev", uplink]);
        foreach (var stale in proxies.Except(want))
            HostProgram.TryRun("ip", ["neigh", "del", "proxy", stale, "dev", uplink]);
    }

    /// <summary>Removes every proxy entry of <paramref name="range"/> on <paramref name="uplink"/> (the uplink or the range
    /// changed, or the operator took the routed range away).</summary>
    public static void RemoveProxies(string uplink, Ipv4Subnet range)
    {
        if (!Directory.Exists($"/sys/class/net/{uplink}")) return;
        foreach (var stale in ProxyEntries(uplink, range))
            HostProgram.TryRun("ip", ["neigh", "del", "proxy", stale, "dev", uplink]);
    }

    /// <summary>The /32 routes on the bridge that the agent made (static, link scope), by address.</summary>
    public static IReadOnlySet<string> HostRoutes(HostBridge bridge)
    {
        if (!bridge.Exists) return new HashSet<string>();
        var json = HostProgram.Run("ip", ["-4", "-j", "route", "show", "dev", bridge.Name, "proto", "static"]);
        return Entries(json).Where(d => !d.Contains('/', StringComparison.Ordinal)).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>The proxy neighbour entries on <paramref name="uplink"/> inside <paramref name="range"/>.</summary>
    public static IReadOnlySet<string> ProxyEntries(string uplink, Ipv4Subnet range)
    {
        var json = HostProgram.Run("ip", ["-4", "-j", "neigh", "show", "proxy", "dev", uplink]);
        return Entries(json).Where(d => IPAddress.TryParse(d, out var a) && range.Contains(a)).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>The "dst" of each object in ip's JSON output.</summary>
    private static IEnumerable<string> Entries(string json)
    {
        if (string.IsNullOrWhiteSpace(json)) yield break;
        using var doc = JsonDocument.Parse(json);
        foreach (var entry in doc.RootElement.EnumerateArray())
            if (entry.TryGetProperty("dst", out var dst) && dst.GetString() is { } d)
                yield return d;
    }

    /// <summary>Why <paramref name="uplink"/> cannot carry routed addresses, or null when it can.</summary>
    public static string? UplinkProblem(string uplink, string bridgeName)
    {
        if (uplink.Length is 0 or > 15 || uplink.Any(c => c is '/' or '\0' || char.IsWhiteSpace(c)) || uplink is "." or "..")
            return $"'{uplink}' is not an interface name";
        if (!Directory.Exists($"/sys/class/net/{uplink}")) return $"no interface '{uplink}' on this host";
        if (uplink == bridgeName) return $"'{uplink}' is the guests' own bridge";
        if (uplink == "lo") return "the loopback interface carries nothing to the outside";
        return null;
    }

    /// <summary>What on the host already holds addresses of <paramref name="range"/>: one of the host's own addresses, or a
    /// route to part of it through another interface than <paramref name="uplink"/> and the agent's bridge (another
    /// agent's guest subnet, a VPN). A route through the uplink that contains the range is the shared-link case and fine.</summary>
    public static string? HostOverlap(Ipv4Subnet range, string? uplink, string bridgeName)
    {
        using (var addrs = JsonDocument.Parse(HostProgram.Run("ip", ["-4", "-j", "addr", "show"])))
            foreach (var link in addrs.RootElement.EnumerateArray())
                if (link.TryGetProperty("addr_info", out var infos))
                    foreach (var info in infos.EnumerateArray())
                        if (info.TryGetProperty("local", out var local) && IPAddress.TryParse(local.GetString(), out var a) && range.Contains(a))
                            return $"the host holds {a} on {link.GetProperty("ifname").GetString()}";
        using var routes = JsonDocument.Parse(HostProgram.Run("ip", ["-4", "-j", "route", "show", "table", "all"]));
        foreach (var route in routes.RootElement.EnumerateArray())
        {
            var dst = route.TryGetProperty("dst", out var d) ? d.GetString() : null;
            var dev = route.TryGetProperty("dev", out var v) ? v.GetString() : null;
            if (dst is null or "default" || dev == bridgeName || dev == uplink) continue;
            if (route.TryGetProperty("type", out var type) && type.GetString() is "local" or "broadcast") continue;
            var cidr = dst.Contains('/', StringComparison.Ordinal) ? dst : dst + "/32";
            if (!TryRange(cidr, out var other)) continue;
            if (Overlap(range, other)) return $"the host routes {cidr} through {dev ?? "another interface"}";
        }
        return null;
    }

    private static bool TryRange(string cidr, out Ipv4Subnet range)
    {
        try
        {
            range = Ipv4Subnet.Parse(cidr, minPrefix: 1, maxPrefix: 32);
            return true;
        }
        catch (FormatException)
        {
            range = null!;
            return false;
        }
    }

    /// <summary>Whether two ranges share an address.</summary>
    public static bool Overlap(Ipv4Subnet a, Ipv4Subnet b)
    {
        var prefix = Math.Min(a.PrefixLength, b.PrefixLength);
        var mask = prefix == 0 ? 0u : uint.MaxValue << (32 - prefix);
        return (a.Network & mask) == (b.Network & mask);
    }
}
