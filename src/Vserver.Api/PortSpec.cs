using System.Globalization;

namespace Vserver.Api;

/// <summary>Published ports as an operator writes them: <c>HOSTPORT:GUESTPORT[/tcp|udp]</c> to publish, <c>HOSTPORT[/tcp|udp]</c>
/// to name one that is published. Protocols are lower-cased; tcp when none is given.</summary>
public static class PortSpec
{
    public const string Usage = "write HOSTPORT:GUESTPORT[/tcp|udp], e.g. 8080:80 or 5353:53/udp";

    public static bool TryParse(string text, out PortMapping mapping, out string error)
    {
        mapping = new PortMapping();
        var (ports, protocol, protocolError) = SplitProtocol(text);
        if (protocolError is not null)
        {
            error = protocolError;
            return false;
        }
        var parts = ports.Split(':');
        if (parts.Length != 2)
        {
            error = $"invalid port spec '{text}': {Usage}";
            return false;
        }
        if (PortError("host port", parts[0], text) is { } hostError)
        {
            error = hostError;
            return false;
        }
        if (PortError("guest port", parts[1], text) is { } guestError)
        {
            error = guestError;
            return false;
        }
        mapping = new PortMapping { HostPort = int.Parse(parts[0], CultureInfo.InvariantCulture), GuestPort = int.Parse(parts[1], CultureInfo.InvariantCulture), Protocol = protocol };
        error = "";
        return true;
    }

    /// <summary>A published host port: <c>8080</c> or <c>5353/udp</c>.</summary>
    public static bool TryParseHostPort(string text, out int hostPort, out string protocol, out string error)
    {
        hostPort = 0;
        (var port, protocol, var protocolError) = SplitProtocol(text);
        error = protocolError ?? (port.Contains(':', StringComparison.Ordinal)
            ? $"invalid host port '{text}': give the host port alone, e.g. 8080 or 5353/udp"
            : PortError("host port", port, text)) ?? "";
        if (error.Length > 0) return false;
        hostPort = int.Parse(port, CultureInfo.InvariantCulture);
        return true;
    }

    public static string Format(PortMapping mapping) => $"{mapping.HostPort}:{mapping.GuestPort}/{mapping.Protocol ?? "tcp"}";

    private static (string Ports, string Protocol, string? Error) SplitProtocol(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0) return (text, "tcp", null);
        var protocol = text[(slash + 1)..].ToLowerInvariant();
        return protocol is "tcp" or "udp"
            ? (text[..slash], protocol, null)
            : (text, "", $"invalid protocol '{text[(slash + 1)..]}' in '{text}': use tcp or udp");
    }

    private static string? PortError(string what, string digits, string text) =>
        digits.Length is > 0 and <= 5 && digits.All(char.IsAsciiDigit) && int.Parse(digits, CultureInfo.InvariantCulture) is >= 1 and <= 65535
            ? null
            : $"invalid {what} '{digits}' in '{text}': give a port from 1 to 65535";
}
