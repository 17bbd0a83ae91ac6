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
        // A bridge without an address of its own takes the lowest of its ports' and changes it as guests come and go:
        // every guest's ARP entry for the gateway then names a MAC nobody answers to until it expires (a minute of no
        // network after another guest was destroyed). libvirt and Docker pin it; so do we, to one derived from the name.
        if (File.ReadAllText($"/sys/class/net/{Name}/addr_assign_type").Trim() != NetAddrSet)
            HostProgram.Run("ip", ["link", "set", Name, "address", StableMac(Name)]);
        HostProgram.Run("ip", ["link", "set", Name, "up"]);
    }

    /// <summary>addr_assign_type of an address set by hand (NET_ADDR_SET): the kernel keeps it as ports change.</summary>
    private const string NetAddrSet = "3";

    /// <summary>A locally administered unicast MAC that is the same for a bridge name on every start.</summary>
    public static string StableMac(string bridge)
    {
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("vserver-bridge:" + bridge));
        return $"02:{hash[0]:x2}:{hash[1]:x2}:{hash[2]:x2}:{hash[3]:x2}:{hash[4]:x2}";
    }

    public void Delete()
    {
        if (Exists) HostProgram.TryRun("ip", ["link", "del", Name]);
    }
}
