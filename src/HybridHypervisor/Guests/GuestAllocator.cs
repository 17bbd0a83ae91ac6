using System.Net;
using HybridHypervisor.Domains;
using HybridHypervisor.Model;
using Vserver.Isolation.Network;

namespace HybridHypervisor.Guests;

/// <summary>
/// What a new guest is given on this host: an address in the guest subnet, a host id range of its own, a MAC. Pure rules
/// over what the guests already hold (the fleet passes them in under its membership lock), so a cluster-wide store can
/// later take the fleet's place as the source of what is taken.
/// </summary>
public static class GuestAllocator
{
    /// <summary>The address asked for if no guest holds it, else the subnet's first free one (<paramref name="held"/>: what
    /// every guest holds, broken ones and those being created included).</summary>
    public static IPAddress Address(string? requested, IEnumerable<GuestClaims> held, Ipv4Subnet subnet)
    {
        var claims = held.ToList();
        if (requested is not null)
        {
            var address = IPAddress.Parse(requested);
            if (claims.FirstOrDefault(c => c.Addresses.Contains(address.ToString(), StringComparer.Ordinal)) is { } owner)
                throw FleetException.AddressTaken(requested, owner.Name);
            return address;
        }
        return subnet.FirstFree(claims.SelectMany(c => c.Addresses).Select(a => IPAddress.TryParse(a, out var ip) ? ip : null).OfType<IPAddress>())
            ?? throw FleetException.Conflict($"the guest subnet {subnet} is full; destroy a guest or configure a larger VSERVER_SUBNET");
    }

    /// <summary>A host id range overlapping none of <paramref name="taken"/> (every guest's, broken ones included: their
    /// files are owned by it), so no two guests ever share ids.</summary>
    public static IdMap Ids(IEnumerable<IdMap> taken, HostIdRange range)
    {
        try
        {
            return range.Allocate(taken);
        }
        catch (InvalidOperationException e)
        {
            throw FleetException.Conflict(e.Message);
        }
    }

    /// <summary>A guest's MAC, the same for its whole life (across restarts, saves, promotion and demotion) and different
    /// on another state root: derived from both.</summary>
    public static string Mac(string stateRoot, string name) => DomainTap.MacFor($"{stateRoot}\0{name}");
}
