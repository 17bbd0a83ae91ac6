namespace HybridHypervisor.Model;

/// <summary>The guests' network as the operator set it (STATEROOT/network.json; absent means the defaults).</summary>
public sealed record HostNetworkSettings
{
    /// <summary>Outbound NAT: the guest subnet reaches beyond the host, masqueraded to the host's addresses.</summary>
    public bool Nat { get; init; } = true;
}
