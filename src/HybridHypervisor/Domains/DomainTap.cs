using System.Security.Cryptography;
using System.Text;
using Vserver.Isolation.Network;

namespace HybridHypervisor.Domains;

/// <summary>
/// A domain's network: a tap device on the host bridge, beside the vservers' veths, that QEMU opens by name
/// (-netdev tap,ifname=NAME,script=no,downscript=no). The guest's address is configured inside the guest; the MAC is
/// derived from the guest's identity so it stays the same across restarts, saves and restores.
/// </summary>
public static class DomainTap
{
    public static bool Exists(string tap) => Directory.Exists($"/sys/class/net/{tap}");

    /// <summary>Creates the tap (persistent, owned by root) and plugs it into the bridge; undoes itself on failure.</summary>
    public static void Create(string tap, HostBridge bridge)
    {
        HostBridge.ValidateName(tap);
        try
        {
            Netlink.AddTap(tap);
            using var netlink = Netlink.Open();
            netlink.SetUp(tap, master: bridge.Name);
        }
        catch
        {
            Destroy(tap);
            throw;
        }
    }

    /// <summary>Removes the tap if it exists; safe to call twice.</summary>
    public static void Destroy(string tap)
    {
        if (Exists(tap)) Netlink.TryDeleteLink(tap);
    }

    /// <summary>A locally administered unicast MAC (52:54:00 is QEMU's prefix) stable for one identity.</summary>
    public static string MacFor(string identity)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(identity));
        return $"52:54:00:{hash[0]:x2}:{hash[1]:x2}:{hash[2]:x2}";
    }
}
