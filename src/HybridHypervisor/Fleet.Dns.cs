using System.Net;
using HybridHypervisor.Model;
using Vserver.Isolation.Network;

namespace HybridHypervisor;

/// <summary>
/// The guests' resolver: dnsmasq on the bridge's gateway address (<see cref="Resolver"/>), one per agent, forwarding to
/// the host's name servers (or those the operator set) and answering each guest's name under the suffix (db1.vserver),
/// for vservers and domains alike. It outlives the agent, so the guests' DNS does not stop while the agent restarts;
/// the next agent adopts it. Its names are rewritten whenever a guest comes or goes.
/// </summary>
public sealed partial class Fleet
{
    private Resolver? _resolver;
    private readonly Lock _namesLock = new();
    private string? _resolverProblem;

    private string ResolverDir => Path.Combine(_options.RunRoot, "dns");

    private ResolverConfig ResolverConfigNow()
    {
        var settings = NetworkSettings;
        return new ResolverConfig(Network.BridgeName, _options.Subnet.Gateway, settings.DnsDomain,
            settings.DnsUpstream?.Select(IPAddress.Parse).ToList(), ResolverDir);
    }

    /// <summary>What a guest's /etc/resolv.conf says at its start: the resolver on the bridge and the suffix to search,
    /// the name servers its config names, or nothing (null: it keeps its own file).</summary>
    internal ResolvConf? ResolvFor(GuestConfig config) => config.Network.Dns switch
    {
        null => new ResolvConf([_options.Subnet.Gateway], NetworkSettings.DnsDomain),
        { Count: 0 } => null,
        var servers => new ResolvConf(servers.Select(IPAddress.Parse).ToList(), null),
    };

    /// <summary>Starts (or adopts) the resolver at the agent's start. One that cannot start (its port taken) leaves the
    /// agent serving all the same: the problem is logged, shown by vsctl host, and supervision keeps trying.</summary>
    private void StartResolver()
    {
        lock (_namesLock)
        {
            _resolver ??= Network.CreateResolver(ResolverConfigNow(), _log);
            if (_resolver is null) return;
            try
            {
                _resolver.WriteHosts(GuestNames());
                _resolver.Start();
                _resolverProblem = null;
                _log($"resolver: dnsmasq pid {_resolver.Pid} on {_options.Subnet.Gateway}:53, guests' names under .{_resolver.Config.Domain}, upstream {UpstreamText(NetworkSettings)}");
            }
            catch (Exception e) when (e is ResolverException or IOException or UnauthorizedAccessException
                                          or Vserver.Isolation.Processes.HostProgramException)
            {
                _resolverProblem = e.Message;
                _log($"WARNING: the guests' resolver did not start: {e.Message}");
            }
        }
    }

    /// <summary>The resolver's suffix or upstream changed: it starts again with them (guests' next start gets the suffix).</summary>
    private void RestartResolver()
    {
        lock (_namesLock)
        {
            if (_resolver is null)
            {
                StartResolver();
                return;
            }
            Failpoints.Hit("resolver.before-restart");
            _resolver.Restart(ResolverConfigNow());
            _resolver.WriteHosts(GuestNames());
            _resolverProblem = null;
        }
    }

    /// <summary>Rewrites the names the resolver answers from the guests' configs (a failure is logged: the guest change it
    /// follows has happened, and the next one writes them whole again).</summary>
    private void RefreshNames()
    {
        lock (_namesLock)
        {
            if (_resolver is null) return;
            try
            {
                _resolver.WriteHosts(GuestNames());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                _log($"WARNING: writing the guests' names for the resolver failed: {e.Message}");
            }
        }
    }

    /// <summary>Each guest's name and address (running or stopped: an address is a guest's for its whole life).</summary>
    private List<(string Name, IPAddress Address)> GuestNames() =>
        _registry.Guests().Select(g => g.Config)
            .Select(c => (c.Name, Address: c.Network.Ipv4 is { } ip && IPAddress.TryParse(ip, out var a) ? a : null))
            .Where(n => n.Address is not null).Select(n => (n.Name, n.Address!)).ToList();

    /// <summary>
    /// Takes the guests' network off the host: the resolver, the agent's table, the routes and proxy entries of the routed
    /// range and the bridge (what lxc-net's stop does). Refused while any guest exists, since each would lose its network;
    /// the settings stay, and the next agent makes everything again. The caller stops the agent after it.
    /// </summary>
    public async Task<IReadOnlyList<string>> TeardownNetworkAsync(CancellationToken ct)
    {
        await _membership.WaitAsync(ct);
        try
        {
            var names = _registry.Guests().Select(g => g.Config.Name).Concat(_registry.Broken().Select(b => b.Name)).Concat(_registry.Creating())
                .Order(StringComparer.Ordinal).ToList();
            if (names.Count > 0)
                throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.Conflict,
                    $"the guests' network cannot go while guests exist ({string.Join(", ", names)}): each would lose its network; destroy them first",
                    ("guests", string.Join(',', names)));
            lock (_namesLock)
            {
                _resolver?.Stop();
                _resolver?.Dispose();
                _resolver = null;
            }
            lock (_portsLock) Network.Teardown(NetworkSettings.Uplink, RoutedRange);
            _log($"the guests' network is gone from the host (table {Network.PortTable}, resolver, bridge {Network.BridgeName}); the agent stops");
            return [$"nftables table {Network.PortTable}", $"resolver on {_options.Subnet.Gateway}", .. RoutedRange is { } r ? [$"routes and proxy ARP entries of {r}"] : Array.Empty<string>(),
                $"bridge {Network.BridgeName}"];
        }
        finally
        {
            _membership.Release();
        }
    }

    /// <summary>The resolver as vsctl host shows it.</summary>
    public Vserver.Api.ResolverInfo ResolverInfo()
    {
        var settings = NetworkSettings;
        int? pid;
        string? problem;
        lock (_namesLock)
        {
            pid = _resolver?.Pid;
            problem = _resolverProblem ?? (pid is null ? "not running" : null);
        }
        return new Vserver.Api.ResolverInfo
        {
            Address = _options.Subnet.Gateway.ToString(),
            Domain = settings.DnsDomain,
            Upstream = settings.DnsUpstream ?? [],
            Pid = pid,
            Problem = problem,
        };
    }
}
