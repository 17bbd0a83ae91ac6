using System.Globalization;

namespace Vserver.Isolation.Network;

/// <summary>
/// Which ports programs on the host (the agent's network namespace) hold, from /proc/net/{tcp,tcp6,udp,udp6}: a
/// published port there would take their new connections away from them, since DNAT comes before the socket lookup.
/// </summary>
public static class HostPorts
{
    // Socket states as the kernel prints them: TCP_LISTEN, and TCP_CLOSE for a UDP socket that is bound but not connected
    // (a connected one only hears its peer, whose datagrams belong to a connection conntrack already knows).
    private const string TcpListen = "0A";
    private const string UdpUnconnected = "07";

    public static bool InUse(PortProtocol protocol, int port)
    {
        var (files, state) = protocol == PortProtocol.Udp
            ? (new[] { "/proc/net/udp", "/proc/net/udp6" }, UdpUnconnected)
            : (new[] { "/proc/net/tcp", "/proc/net/tcp6" }, TcpListen);
        foreach (var file in files)
        {
            string text;
            try
            {
                text = File.ReadAllText(file);
            }
            catch (IOException)
            {
                continue; // no IPv6 on this host
            }
            if (LocalPorts(text, state).Contains(port)) return true;
        }
        return false;
    }

    /// <summary>The local ports of the sockets in one /proc/net/{tcp,udp}[6] table that are in <paramref name="state"/>.</summary>
    public static IReadOnlySet<int> LocalPorts(string procNetTable, string state)
    {
        var ports = new HashSet<int>();
        foreach (var line in procNetTable.Split('\n').Skip(1))
        {
            // "  0: 0100007F:1F90 00000000:0000 0A ..." (tcp6/udp6: 32 hex digits of address before the colon)
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 4 || !string.Equals(fields[3], state, StringComparison.OrdinalIgnoreCase)) continue;
            var colon = fields[1].LastIndexOf(':');
            if (colon < 0) continue;
            if (int.TryParse(fields[1].AsSpan(colon + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var port))
                ports.Add(port);
        }
        return ports;
    }
}
