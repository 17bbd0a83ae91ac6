using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json.Serialization;

namespace Vserver.Api;

/// <summary>A published port: HOSTPORT on the agent's host (127.0.0.1 and its other addresses) reaches GUESTPORT on the
/// guest's address. The one published-port type: of the contract, of vsctl (its port verb and hosting files) and of the
/// fleet, whose guest.json records a guest's ports as these (hostPort, guestPort, protocol); written as operators write
/// it: <c>8080:80/tcp</c>.</summary>
public sealed record PortInfo
{
    [JsonConstructor]
    public PortInfo()
    {
    }

    public PortInfo(int hostPort, int guestPort, string protocol = "tcp")
    {
        HostPort = hostPort;
        GuestPort = guestPort;
        Protocol = protocol;
    }

    public int HostPort { get; init; }
    public int GuestPort { get; init; }
    /// <summary>tcp | udp; tcp when left out (as a hand-written guest.json may). The JSON source generator sets every
    /// init property, a missing one to null, hence the setter's default too.</summary>
    public string Protocol { get; init => field = value ?? "tcp"; } = "tcp";

    public override string ToString() => $"{HostPort}:{GuestPort}/{Protocol}";

    /// <summary>HOSTPORT:GUESTPORT[/tcp|udp], ports 1..65535; tcp when no protocol is given. (Not named TryParse: the
    /// agent's minimal APIs take a static TryParse for a binding method and refuse this signature.)</summary>
    public static bool TryParseSpec(string text, [NotNullWhen(true)] out PortInfo? port, out string error)
    {
        port = null;
        var spec = text.Trim();
        var protocol = "tcp";
        var slash = spec.IndexOf('/', StringComparison.Ordinal);
        if (slash >= 0)
        {
            protocol = spec[(slash + 1)..].ToLowerInvariant();
            spec = spec[..slash];
            if (protocol is not ("tcp" or "udp"))
            {
                error = $"invalid port '{text}': the protocol is tcp or udp";
                return false;
            }
        }
        var parts = spec.Split(':');
        if (parts.Length != 2 || !TryPort(parts[0], out var host) || !TryPort(parts[1], out var guest))
        {
            error = $"invalid port '{text}': expected HOSTPORT:GUESTPORT[/tcp|udp] with ports 1..65535, e.g. 8080:80";
            return false;
        }
        port = new PortInfo(host, guest, protocol);
        error = "";
        return true;

        static bool TryPort(string s, out int value) =>
            int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value is >= 1 and <= 65535;
    }
}
