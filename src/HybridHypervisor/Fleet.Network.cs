using System.Net;
using System.Text.Json;
using HybridHypervisor.Model;
using Vserver.Api;
using Vserver.Isolation.Network;
using Vserver.Isolation.Storage;
using static Vserver.Api.ErrorCodes;

namespace HybridHypervisor;

/// <summary>
/// The guests' way to the world, as the operator set it (STATEROOT/network.json): outbound NAT of the guest subnet (on
/// unless turned off), the routed range of public addresses guests may hold as their own and the uplink it arrives on,
/// and the resolver's suffix and upstream. The table, routes and proxy entries are made whole from these and the guests'
/// configs (<see cref="ExpectedRules"/>), like the published ports they sit beside.
/// </summary>
public sealed partial class Fleet
{
    private readonly Lock _networkLock = new();
    private HostNetworkSettings _networkSettings = new();
    private Ipv4Subnet? _routedRange;

    private string NetworkSettingsFile => Path.Combine(_options.StateRoot, "network.json");

    /// <summary>Whether guests reach beyond the host (masqueraded to its addresses).</summary>
    public bool Nat
    {
        get
        {
            lock (_networkLock) return _networkSettings.Nat;
        }
    }

    /// <summary>The network settings as they are now.</summary>
    public HostNetworkSettings NetworkSettings
    {
        get
        {
            lock (_networkLock) return _networkSettings;
        }
    }

    /// <summary>The routed range of public addresses, if the operator gave one.</summary>
    public Ipv4Subnet? RoutedRange
    {
        get
        {
            lock (_networkLock) return _routedRange;
        }
    }

    /// <summary>Whether the host routes IPv4 between its interfaces, which outbound NAT and routed addresses switch on.</summary>
    public bool IpForwarding => PortForwarding.ForwardingOn;

    /// <summary>Reads the network's settings (start-up); a file it cannot use stops the agent with one line.</summary>
    private void LoadNetworkSettings()
    {
        byte[]? bytes;
        const string fallback = "fix or remove it (the defaults are then: outbound NAT on, no routed range, the resolver's suffix vserver)";
        try
        {
            bytes = StateFile.TryReadAllBytes(_options.StateRoot, NetworkSettingsFile);
        }
        catch (StateFileException e)
        {
            throw new InvalidOperationException($"{e.Message}; {fallback}", e);
        }
        if (bytes is null) return;
        HostNetworkSettings settings;
        try
        {
            settings = JsonSerializer.Deserialize(bytes, ConfigJson.Default.HostNetworkSettings) ?? new HostNetworkSettings();
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"{NetworkSettingsFile}: {GuestStore.JsonProblem(e)}; {fallback}", e);
        }
        if (SettingsError(settings) is { } error)
            throw new InvalidOperationException($"{NetworkSettingsFile}: {error.Message}; {fallback}");
        _networkSettings = settings;
        _routedRange = settings.Routed is { } r ? Ipv4Subnet.Parse(r, 1, 32) : null;
    }

    /// <summary>What is wrong with <paramref name="settings"/> on their own (not against the host), or null.</summary>
    private static SettingError? SettingsError(HostNetworkSettings settings)
    {
        if (settings.Routed is { } routed)
        {
            Ipv4Subnet range;
            try
            {
                range = Ipv4Subnet.Parse(routed, minPrefix: MinRoutedPrefix, maxPrefix: 32);
            }
            catch (FormatException)
            {
                return new SettingError(HostSettingsRequest.Fields.Routed, routed, Reasons.Malformed,
                    $"invalid routed range '{routed}': write it as A.B.C.D/N with N between {MinRoutedPrefix} and 32, e.g. 203.0.113.16/28");
            }
            if (range.ToString() != routed)
                return new SettingError(HostSettingsRequest.Fields.Routed, routed, Reasons.Malformed,
                    $"invalid routed range '{routed}': its first address is {range.NetworkAddress}, so write {range}");
            if (settings.Uplink is null)
                return new SettingError(HostSettingsRequest.Fields.Uplink, null, Reasons.Missing,
                    $"a routed range needs the uplink it arrives on, where the host answers ARP for its guests' addresses");
        }
        if (DnsDomainError(settings.DnsDomain) is { } domainError) return domainError;
        foreach (var server in settings.DnsUpstream ?? [])
            if (!IPAddress.TryParse(server, out var a) || a.ToString() != server || server.Count(c => c == '.') != 3)
                return new SettingError(HostSettingsRequest.Fields.DnsUpstream, server, Reasons.Malformed,
                    $"invalid upstream name server '{server}': write it as A.B.C.D");
        return null;
    }

    /// <summary>The widest routed range: a /16 is already more public addresses than one host's guests hold.</summary>
    private const int MinRoutedPrefix = 16;

    private static SettingError? DnsDomainError(string domain) =>
        domain.Length is > 0 and <= 63 && domain.Split('.').All(Vserver.Api.Names.IsValid)
            ? null
            : new SettingError(HostSettingsRequest.Fields.DnsDomain, domain, Reasons.Malformed,
                $"invalid name suffix '{domain}': use DNS labels (lowercase letters, digits, '-') joined by dots, such as vserver or guests.example");

    /// <summary>
    /// Changes the network settings a request gives (null members stay): checks them all first (against the host too:
    /// the uplink exists, the range overlaps neither the guest subnet, nor another agent's range, nor what the host holds
    /// or routes elsewhere, and no guest holds an address of a range taken away), then rewrites the host's rules and
    /// restarts the resolver if its settings changed, and records them last. A failure on the way puts back what was.
    /// </summary>
    public void SetNetwork(HostSettingsRequest request)
    {
        if (request is { Nat: null, Routed: null, Uplink: null, DnsDomain: null, DnsUpstream: null }) return;
        lock (_portsLock)
        lock (_networkLock)
        {
            var before = _networkSettings;
            var next = before with
            {
                Nat = request.Nat ?? before.Nat,
                Routed = request.Routed is null ? before.Routed : request.Routed.Length == 0 ? null : request.Routed,
                Uplink = request.Uplink is null ? before.Uplink : request.Uplink.Length == 0 ? null : request.Uplink,
                DnsDomain = request.DnsDomain ?? before.DnsDomain,
                DnsUpstream = request.DnsUpstream is null ? before.DnsUpstream : request.DnsUpstream.Count == 0 ? null : request.DnsUpstream,
            };
            if (next.Routed is null && request.Routed is not null) next = next with { Uplink = request.Uplink is { Length: > 0 } ? next.Uplink : null };
            if (SettingsError(next) is { } invalid) throw FleetException.Invalid(invalid);
            if (next == before) return;
            var range = next.Routed is { } r ? Ipv4Subnet.Parse(r, 1, 32) : null;
            if (range is not null && (next.Routed != before.Routed || next.Uplink != before.Uplink)
                && Network.RoutedProblem(range, next.Uplink!, _options.Subnet) is { } problem)
                throw FleetException.Invalid(new SettingError(
                    problem.OfUplink ? HostSettingsRequest.Fields.Uplink : HostSettingsRequest.Fields.Routed,
                    problem.OfUplink ? next.Uplink : next.Routed, problem.OfUplink ? Reasons.NotOnHost : Reasons.Overlaps,
                    $"cannot route {range} to guests through {next.Uplink}: {problem.Why}").With("with", problem.Why));
            var stranded = _registry.Configs()
                .Where(c => c.Network.Ipv4 is { } ip && IPAddress.TryParse(ip, out var a) && !_options.Subnet.Contains(a) && (range is null || !range.Contains(a)))
                .Select(c => c.Name).Order(StringComparer.Ordinal).ToList();
            if (stranded.Count > 0)
                throw FleetException.Invalid(new SettingError(HostSettingsRequest.Fields.Routed, next.Routed ?? "", Reasons.InUse,
                    $"{string.Join(", ", stranded)} {(stranded.Count == 1 ? "holds an address" : "hold addresses")} of the routed range {before.Routed}; destroy {(stranded.Count == 1 ? "it" : "them")} first")
                    .With("guests", string.Join(',', stranded)));

            _networkSettings = next;
            _routedRange = range;
            try
            {
                if (before.Uplink is { } oldUplink && before.Routed is { } oldRange && (oldUplink != next.Uplink || oldRange != next.Routed))
                    Network.RemoveProxies(oldUplink, Ipv4Subnet.Parse(oldRange, 1, 32));
                Network.Apply(ExpectedRules());
                Failpoints.Hit("network.after-rules");
                if (next.DnsDomain != before.DnsDomain || !SameUpstream(next, before)) RestartResolver();
                AtomicFile.WriteAllText(NetworkSettingsFile, JsonSerializer.Serialize(next, ConfigJson.Default.HostNetworkSettings) + "\n",
                    beneath: _options.StateRoot);
            }
            catch (Exception e)
            {
                _networkSettings = before;
                _routedRange = before.Routed is { } b ? Ipv4Subnet.Parse(b, 1, 32) : null;
                if (next.Uplink is { } newUplink && next.Routed is { } newRange) TryQuietly(() => Network.RemoveProxies(newUplink, Ipv4Subnet.Parse(newRange, 1, 32)));
                TryQuietly(() => Network.Apply(ExpectedRules()));
                if (next.DnsDomain != before.DnsDomain || !SameUpstream(next, before)) TryQuietly(RestartResolver);
                throw e as FleetException ?? new FleetException(FleetError.Failed, $"changing the guests' network failed: {e.Message}", e);
            }
            if (next.Nat != before.Nat) _log($"outbound NAT of {_options.Subnet} switched {(next.Nat ? "on" : "off")}");
            if (next.Routed != before.Routed || next.Uplink != before.Uplink)
                _log(next.Routed is null ? "no routed range: guests hold addresses of the guest subnet only" : $"routed range {next.Routed} on uplink {next.Uplink}");
            if (next.DnsDomain != before.DnsDomain || !SameUpstream(next, before))
                _log($"resolver: guests' names under .{next.DnsDomain}, upstream {UpstreamText(next)}");
        }
    }

    private static bool SameUpstream(HostNetworkSettings a, HostNetworkSettings b) => (a.DnsUpstream ?? []).SequenceEqual(b.DnsUpstream ?? []);

    private static string UpstreamText(HostNetworkSettings s) => s.DnsUpstream is { } u ? string.Join(", ", u) : "the host's /etc/resolv.conf";

    private void TryQuietly(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            _log($"WARNING: putting the guests' network back as it was failed: {e.Message}");
        }
    }

    /// <summary>Everything the agent's table, routes and proxy entries should hold now, with <paramref name="changedConfig"/>
    /// standing for guest <paramref name="changed"/>'s config.</summary>
    private HostRules ExpectedRules(string? changed = null, GuestConfig? changedConfig = null, bool quiet = false)
    {
        var settings = NetworkSettings;
        var range = RoutedRange;
        List<GuestConfig> configs;
        lock (_fleetLock)
            configs = _registry.Configs().Select(c => changed is not null && c.Name == changed ? changedConfig! : c).ToList();
        var routed = range is null ? [] : configs
            .Select(c => c.Network.Ipv4 is { } ip && IPAddress.TryParse(ip, out var a) && range.Contains(a) && !_options.Subnet.Contains(a) ? a : null)
            .OfType<IPAddress>().OrderBy(Ipv4Subnet.ToUInt).ToList();
        return new HostRules(_options.Subnet, ExpectedForwards(changed, changedConfig, quiet), settings.Nat, range, settings.Uplink, routed);
    }

    /// <summary>Whether a guest's address is one of the routed range (held as a /32, reached without NAT).</summary>
    public bool IsRouted(string? ipv4) => ipv4 is not null && IPAddress.TryParse(ipv4, out var a) && !_options.Subnet.Contains(a)
        && RoutedRange is { } range && range.Contains(a);
}
