using Vserver.Isolation.Interop;

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
        using var netlink = Netlink.Open();
        if (!Exists)
        {
            try
            {
                netlink.AddBridge(Name);
            }
            catch (SystemCallException) when (Exists)
            {
                // Another agent (or a retry) made it meanwhile.
            }
        }
        var index = netlink.LinkIndex(Name);
        if (!netlink.Ipv4Addresses(index, Name).Any(a => Subnet.Gateway.Equals(a.Local) && a.PrefixLength == Subnet.PrefixLength))
        {
            try
            {
                netlink.AddAddress(index, Name, Subnet.Gateway, Subnet.PrefixLength);
            }
            catch (SystemCallException e) when (e.Errno == Errno.EEXIST)
            {
            }
        }
        // A bridge without an address of its own takes the lowest of its ports' and changes it as guests come and go:
        // every guest's ARP entry for the gateway then names a MAC nobody answers to until it expires (a minute of no
        // network after another guest was destroyed). libvirt and Docker pin it; so do we, to one derived from the name.
        if (File.ReadAllText($"/sys/class/net/{Name}/addr_assign_type").Trim() != NetAddrSet) netlink.SetMac(Name, StableMac(Name));
        netlink.SetUp(Name);
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
        if (Exists) Netlink.TryDeleteLink(Name);
    }
}
