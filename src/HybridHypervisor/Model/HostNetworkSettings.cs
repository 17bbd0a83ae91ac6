namespace HybridHypervisor.Model;

/// <summary>The guests' network as the operator set it (STATEROOT/network.json; absent means the defaults).</summary>
public sealed record HostNetworkSettings
{
    /// <summary>Outbound NAT: the guest subnet reaches beyond the host, masqueraded to the host's addresses.</summary>
    public bool Nat { get; init; } = true;
    /// <summary>Public addresses the upstream routes to the host (A.B.C.D/N), which guests may hold as their own.</summary>
    public string? Routed { get; init; }
    /// <summary>The interface the routed range arrives on; the host answers ARP there for each guest's address.</summary>
    public string? Uplink { get; init; }
    /// <summary>The suffix under which the resolver answers guests' names (db1.vserver).</summary>
    public string DnsDomain { get; init; } = DefaultDnsDomain;
    /// <summary>The resolver's upstream name servers; null: those of the host's /etc/resolv.conf.</summary>
    public IReadOnlyList<string>? DnsUpstream { get; init; }

    public const string DefaultDnsDomain = "vserver";

    public bool Equals(HostNetworkSettings? other) =>
        other is not null && Nat == other.Nat && Routed == other.Routed && Uplink == other.Uplink && DnsDomain == other.DnsDomain
        && (DnsUpstream ?? []).SequenceEqual(other.DnsUpstream ?? []) && (DnsUpstream is null) == (other.DnsUpstream is null);

    public override int GetHashCode() => HashCode.Combine(Nat, Routed, Uplink, DnsDomain);
}
