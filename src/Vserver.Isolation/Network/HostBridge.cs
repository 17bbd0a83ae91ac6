using Vserver.Isolation.Processes;

namespace Vserver.Isolation.Network;

/// <summary>The host bridge every vserver's veth is plugged into; it holds the subnet's gateway address.</summary>
public sealed class HostBridge(string name, Ipv4Subnet subnet)
{
    public string Name { get; } = ValidateName(name);
    public Ipv4Subnet Subnet { get; } = subnet;

    public static string ValidateName(string name) =>
        name.Length is > 0 and <= 15 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')
            ? name
            : throw new FormatException($"invalid bridge name '{name}': use 1 to 15 letters, digits, '-', '_' or '.'");

    public bool Exists => Directory.Exists($"/sys/class/net/{Name}");

    /// <summary>Creates the bridge if missing and makes sure it is up with the gateway address.</summary>
    public void Ensure()
    {
        if (Exists && !Directory.Exists($"/sys/class/net/{Name}/bridge"))
            throw new InvalidOperationException($"network interface '{Name}' exists but is not a bridge; choose another VSERVER_BRIDGE");
        if (!Exists)
        {
            var (code, _, stderr) = HostProgram.TryRun("ip", ["link", "add", Name, "type", "bridge"]);
            if (code != 0 && !Exists) throw new HostProgramException($"ip link add {Name} type bridge: {stderr.Trim()}", code, stderr);
        }
        var gateway = $"{Subnet.Gateway}/{Subnet.PrefixLength}";
        var addresses = HostProgram.Run("ip", ["-o", "-4", "addr", "show", "dev", Name]);
        if (!addresses.Contains($" {gateway} ", StringComparison.Ordinal))
        {
            var (code, _, stderr) = HostProgram.TryRun("ip", ["addr", "add", gateway, "dev", Name]);
            if (code != 0 && !stderr.Contains("File exists", StringComparison.Ordinal))
                throw new HostProgramException($"ip addr add {gateway} dev {Name}: {stderr.Trim()}", code, stderr);
        }
        HostProgram.Run("ip", ["link", "set", Name, "up"]);
    }

    public void Delete()
    {
        if (Exists) HostProgram.TryRun("ip", ["link", "del", Name]);
    }
}
