using System.Text.Json;
using HybridHypervisor.Model;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>
/// The guests' way out: outbound NAT of the guest subnet (on unless the operator turns it off), kept in
/// STATEROOT/network.json and written into the agent's nftables table with the published ports, rewritten whole like
/// them. With it off, guests reach the host and each other only.
/// </summary>
public sealed partial class Fleet
{
    private readonly Lock _networkLock = new();
    private HostNetworkSettings _networkSettings = new();

    private string NetworkSettingsFile => Path.Combine(_options.StateRoot, "network.json");

    /// <summary>Whether guests reach beyond the host (masqueraded to its addresses).</summary>
    public bool Nat
    {
        get
        {
            lock (_networkLock) return _networkSettings.Nat;
        }
    }

    /// <summary>Whether the host routes IPv4 between its interfaces, which outbound NAT switches on.</summary>
    public bool IpForwarding => Vserver.Isolation.Network.PortForwarding.ForwardingOn;

    /// <summary>Reads the network's settings (start-up); a file it cannot use stops the agent with one line.</summary>
    private void LoadNetworkSettings()
    {
        byte[]? bytes;
        try
        {
            bytes = StateFile.TryReadAllBytes(_options.StateRoot, NetworkSettingsFile);
        }
        catch (StateFileException e)
        {
            throw new InvalidOperationException($"{e.Message}; fix or remove it (outbound NAT is then on)", e);
        }
        if (bytes is null) return;
        try
        {
            _networkSettings = JsonSerializer.Deserialize(bytes, ConfigJson.Default.HostNetworkSettings) ?? new HostNetworkSettings();
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"{NetworkSettingsFile}: {GuestStore.JsonProblem(e)}; fix or remove it (outbound NAT is then on)", e);
        }
    }

    /// <summary>Turns outbound NAT on or off: the table is rewritten first, the setting recorded once the host has it.</summary>
    public void SetNat(bool on)
    {
        lock (_portsLock)
        lock (_networkLock)
        {
            if (on == _networkSettings.Nat) return;
            var next = _networkSettings with { Nat = on };
            Network.ApplyForwards(_options.Subnet, ExpectedForwards(), on);
            try
            {
                AtomicFile.WriteAllText(NetworkSettingsFile, JsonSerializer.Serialize(next, ConfigJson.Default.HostNetworkSettings) + "\n",
                    beneath: _options.StateRoot);
            }
            catch
            {
                Network.ApplyForwards(_options.Subnet, ExpectedForwards(), _networkSettings.Nat);
                throw;
            }
            _networkSettings = next;
        }
        _log($"outbound NAT of {_options.Subnet} switched {(on ? "on" : "off")}");
    }
}
