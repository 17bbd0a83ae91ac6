using System.Net;
using HybridHypervisor.Model;
using Vserver.Api;
using Vserver.Isolation.Network;

namespace HybridHypervisor;

/// <summary>One guest's published ports and the address they lead to.</summary>
public sealed record GuestPortsView(string Guest, string? Ipv4, IReadOnlyList<PortInfo> Ports);

/// <summary>
/// Published ports (`vsctl port add web1 8080:80`): a host port on every host address, 127.0.0.1 included, forwarded to
/// a port on the guest's address, vserver or domain alike. They are part of the guest's config and live in one nftables
/// table the agent owns (see <see cref="PortForwarding"/>), rewritten whole from the configs whenever they change, when
/// a guest goes, and at start-up (so a host reboot or a flushed ruleset gets them back). A stopping agent leaves the
/// table as it is: guests run on without an agent, and so do their ports.
/// </summary>
public sealed partial class Fleet
{
    /// <summary>Serialises changes of published ports and every rewrite of the table, so two guests cannot take one
    /// host port and rewrites never interleave. Taken after a guest's lock, never before.</summary>
    private readonly Lock _portsLock = new();

    /// <summary>The published ports of one guest, or of every guest that has some (<paramref name="name"/> null).</summary>
    public IReadOnlyList<GuestPortsView> Ports(string? name = null)
    {
        if (name is not null)
        {
            var config = Find(name).Config;
            return [PortsView(config)];
        }
        List<GuestConfig> configs;
        configs = _registry.Guests().Select(g => g.Config).ToList();
        return configs.Where(c => c.Network.Ports.Count > 0).OrderBy(c => c.Name, StringComparer.Ordinal).Select(PortsView).ToList();
    }

    private static GuestPortsView PortsView(GuestConfig config) =>
        new(config.Name, config.Network.Ipv4, config.Network.Ports.OrderBy(p => p.HostPort).ThenBy(p => p.Protocol).ToList());

    /// <summary>Why published ports may not reach everyone, in the operator's words; empty when nothing stands in the way.</summary>
    public IReadOnlyList<string> PortNotes()
    {
        string forwarding;
        try
        {
            forwarding = File.ReadAllText("/proc/sys/net/ipv4/ip_forward").Trim();
        }
        catch (IOException)
        {
            return [];
        }
        if (forwarding == "1" || Ports().Count == 0) return [];
        return ["IPv4 forwarding is off: published ports answer only from this host (127.0.0.1 and its own addresses); " +
            "for other machines turn it on: sysctl -w net.ipv4.ip_forward=1"];
    }

    /// <summary>Publishes <paramref name="port"/> for guest <paramref name="name"/>: refused, with nothing changed, for a
    /// host port another guest (or this one) already publishes or a program on the host holds.</summary>
    public async Task<GuestView> PublishPortAsync(string name, PortInfo port, CancellationToken ct = default)
    {
        if (GuestConfigValidator.PortError(port) is { } invalid) throw FleetException.Invalid(invalid);
        var g = Find(name);
        await g.Lock.WaitAsync(ct);
        try
        {
            if (g.Removed) throw FleetException.GuestNotFound(name);
            if (g.Config.Network.Ipv4 is null) throw FleetException.Conflict($"guest '{name}' has no IPv4 address to forward a port to");
            lock (_portsLock)
            {
                if (PortRefusal(port, g.Config.Name) is { } refusal) throw refusal;
                var config = g.Config with { Network = g.Config.Network with { Ports = [.. g.Config.Network.Ports, port] } };
                ChangePortsLocked(g, config);
                _log($"published {port} to guest {name} ({config.Network.Ipv4}:{port.GuestPort})");
            }
        }
        finally
        {
            g.Lock.Release();
        }
        return View(g);
    }

    /// <summary>Withdraws the host port <paramref name="hostPort"/>/<paramref name="protocol"/> from guest <paramref name="name"/>.</summary>
    public async Task<GuestView> UnpublishPortAsync(string name, int hostPort, PortProtocol protocol, CancellationToken ct = default)
    {
        var g = Find(name);
        await g.Lock.WaitAsync(ct);
        try
        {
            if (g.Removed) throw FleetException.GuestNotFound(name);
            lock (_portsLock)
            {
                var ports = g.Config.Network.Ports;
                var port = ports.FirstOrDefault(p => p.HostPort == hostPort && p.Protocol == PortProtocols.Name(protocol))
                    ?? throw FleetException.Coded(FleetError.NotFound, Vserver.Api.ErrorCodes.NotFound,
                        $"guest '{name}' publishes no host port {hostPort}/{PortProtocols.Name(protocol)}",
                        ("guest", name), ("port", hostPort.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("protocol", PortProtocols.Name(protocol)));
                var config = g.Config with { Network = g.Config.Network with { Ports = ports.Where(p => p != port).ToList() } };
                ChangePortsLocked(g, config);
                _log($"withdrew published port {port} from guest {name}");
            }
        }
        finally
        {
            g.Lock.Release();
        }
        return View(g);
    }

    /// <summary>Why <paramref name="port"/> cannot be published for <paramref name="guest"/>, or null. Called under the
    /// ports lock.</summary>
    private FleetException? PortRefusal(PortInfo port, string guest)
    {
        var which = $"{port.HostPort}/{port.Protocol}";
        var configs = _registry.Guests().Select(g => g.Config).ToList();
        var owner = configs.FirstOrDefault(c => c.Network.Ports.Any(p => p.HostPort == port.HostPort && p.Protocol == port.Protocol));
        if (owner is not null)
        {
            var published = owner.Network.Ports.First(p => p.HostPort == port.HostPort && p.Protocol == port.Protocol);
            return owner.Name == guest
                ? FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.PortTaken,
                    $"host port {which} is already published for '{guest}' (to its port {published.GuestPort})",
                    ("port", which), ("owner", owner.Name), ("guestPort", published.GuestPort.ToString(System.Globalization.CultureInfo.InvariantCulture)))
                : FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.PortTaken,
                    $"host port {which} is already published for guest '{owner.Name}'; pick another host port", ("port", which), ("owner", owner.Name));
        }
        // A broken guest's ports stay its own: it may be repaired.
        if (_registry.Broken().FirstOrDefault(b => b.Claims.Ports.Contains(which, StringComparer.Ordinal)) is { } broken)
            return FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.PortTaken,
                $"host port {which} is published for guest '{broken.Name}' (broken); pick another host port", ("port", which), ("owner", broken.Name));
        if (HostPorts.InUse(PublishedPorts.ProtocolOf(port), port.HostPort))
            return FleetException.Conflict($"host port {which} is in use on this host ({(port.Protocol == "udp" ? "a bound UDP socket" : "a program listens on it")}); pick another host port");
        return null;
    }

    /// <summary>Applies the guest's new ports to the host, then records them; if the record cannot be written, the rules
    /// go back to what the configs say. Called under the guest's lock and the ports lock.</summary>
    private void ChangePortsLocked(GuestRuntime g, GuestConfig config)
    {
        try
        {
            ApplyPortsLocked(g.Config.Name, config);
            Failpoints.Hit("ports.after-rules");
        }
        catch (Exception e) when (e is Vserver.Isolation.Processes.HostProgramException or IOException)
        {
            throw new FleetException(FleetError.Failed, $"changing the published ports of '{g.Config.Name}' failed: {e.Message}", e);
        }
        try
        {
            _store.Save(config);
        }
        catch
        {
            TryApplyPortsLocked();
            throw;
        }
        g.Config = config;
    }

    /// <summary>Rewrites the table from every guest's config, with <paramref name="changedConfig"/> standing for guest
    /// <paramref name="changed"/>'s. A host port two configs claim (hand-edited files) goes to the first guest by name.</summary>
    private void ApplyPortsLocked(string? changed = null, GuestConfig? changedConfig = null) =>
        Network.Apply(ExpectedRules(changed, changedConfig));

    /// <summary>The forwards the guests' configs ask for (what <see cref="ApplyPortsLocked"/> writes and the host check
    /// compares the live table with).</summary>
    private List<PortForward> ExpectedForwards(string? changed = null, GuestConfig? changedConfig = null, bool quiet = false)
    {
        List<GuestConfig> configs;
        lock (_fleetLock)
            configs = _registry.Guests().Select(g => changed is not null && g.Config.Name == changed ? changedConfig! : g.Config).ToList();
        var forwards = new List<PortForward>();
        var taken = new Dictionary<(int, string), string>();
        foreach (var config in configs.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            if (config.Network.Ipv4 is not { } ip || config.Network.Ports.Count == 0) continue;
            var address = IPAddress.Parse(ip);
            foreach (var port in config.Network.Ports)
            {
                if (taken.TryGetValue((port.HostPort, port.Protocol), out var first))
                {
                    if (!quiet) _log($"WARNING: guest {config.Name} publishes host port {port.HostPort}/{port.Protocol}, as {first} does: only {first} gets it");
                    continue;
                }
                taken[(port.HostPort, port.Protocol)] = config.Name;
                forwards.Add(new PortForward(PublishedPorts.ProtocolOf(port), port.HostPort, address, port.GuestPort, config.Name));
            }
        }
        return forwards;
    }

    /// <summary>Rewrites the table from the configs; a failure is logged (the guest change it follows has happened).</summary>
    private void TryApplyPortsLocked()
    {
        try
        {
            ApplyPortsLocked();
        }
        catch (Exception e) when (e is Vserver.Isolation.Processes.HostProgramException or IOException)
        {
            _log($"WARNING: rewriting the agent's nftables table {Network.PortTable} (published ports, outbound NAT, routed addresses) failed: {e.Message}");
        }
    }

    /// <summary>After a guest with published ports went (destroyed, saved to a file): its rules go with it.</summary>
    /// <summary>A guest left the host (destroyed, saved away): its published ports, its routed address's route and its
    /// name in the resolver go.</summary>
    private void GuestLeft(GuestConfig gone)
    {
        if (gone.Network.Ports.Count > 0 || IsRouted(gone.Network.Ipv4)) lock (_portsLock) TryApplyPortsLocked();
        RefreshNames();
    }

    /// <summary>At start-up: the table as the configs say, whatever the host has now (nothing after a reboot).</summary>
    private void RestorePorts()
    {
        var count = Ports().Sum(p => p.Ports.Count);
        lock (_portsLock) TryApplyPortsLocked();
        if (count > 0) _log($"published ports: {count} in nftables table {Network.PortTable}");
        _log(Nat ? $"outbound NAT: {_options.Subnet} reaches beyond the host, masqueraded (nftables table {Network.PortTable})"
            : $"outbound NAT off: guests reach only the host and each other");
        if (NetworkSettings is { Routed: { } routed, Uplink: { } uplink })
            _log($"routed range {routed} on uplink {uplink}: {ExpectedRules(quiet: true).RoutedGuests?.Count ?? 0} guest address(es) routed");
    }

    /// <summary>Restoring a saved guest: its published ports must still be free.</summary>
    private void RefuseTakenPorts(GuestConfig incoming, string what)
    {
        lock (_portsLock)
        {
            foreach (var port in incoming.Network.Ports)
                if (PortRefusal(port, incoming.Name) is { } refusal)
                    throw FleetException.Conflict($"{what} publishes host port {port.HostPort}/{port.Protocol}, which cannot be had: {refusal.Message}");
        }
    }

    /// <summary>After a guest with published ports came (restored from a file): its rules are added.</summary>
    /// <summary>A guest came onto the host (created, restored): its published ports, its routed address's route and its
    /// name in the resolver come with it.</summary>
    private void GuestCame(GuestConfig come)
    {
        if (come.Network.Ports.Count > 0 || IsRouted(come.Network.Ipv4)) lock (_portsLock) TryApplyPortsLocked();
        RefreshNames();
    }
}
