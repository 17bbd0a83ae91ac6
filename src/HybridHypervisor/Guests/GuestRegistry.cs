using HybridHypervisor.Model;

namespace HybridHypervisor.Guests;

/// <summary>What a guest holds on the host whatever the state of its config: its name, address (and the one its network
/// namespace really has, when that can be read), host id range, MAC and published host ports ("8080/tcp").</summary>
public sealed record GuestClaims(string Name, string? Address = null, IdMap? Ids = null, string? Mac = null)
{
    public string? NetnsAddress { get; init; }
    public IReadOnlyList<string> Ports { get; init; } = [];

    public static GuestClaims Of(GuestConfig config) =>
        new(config.Name, config.Network.Ipv4, config.Security.IdMap, config.Network.Mac)
        {
            Ports = config.Network.Ports.Select(p => $"{p.HostPort}/{p.Protocol}").ToList(),
        };

    /// <summary>Every address it holds: its config's and its namespace's.</summary>
    public IEnumerable<string> Addresses => new[] { Address, NetnsAddress }.OfType<string>().Distinct(StringComparer.Ordinal);

    /// <summary>What of <paramref name="other"/>'s this guest also holds, in one line; null when nothing.</summary>
    public string? Clash(GuestClaims other)
    {
        if (Addresses.FirstOrDefault(a => other.Addresses.Contains(a, StringComparer.Ordinal)) is { } address)
            return $"address {address} is held by guest '{other.Name}'";
        if (Ids is { } ids && other.Ids is { } theirs && ids.HostBase < theirs.HostEnd && theirs.HostBase < ids.HostEnd)
            return $"host ids {ids.HostBase}..{ids.HostEnd - 1} overlap those of guest '{other.Name}' ({theirs.HostBase}..{theirs.HostEnd - 1})";
        if (Mac is not null && string.Equals(Mac, other.Mac, StringComparison.OrdinalIgnoreCase)) return $"MAC {Mac} is held by guest '{other.Name}'";
        if (Ports.FirstOrDefault(p => other.Ports.Contains(p, StringComparer.Ordinal)) is { } port)
            return $"host port {port} is published for guest '{other.Name}'";
        return null;
    }
}

/// <summary>
/// Who is on this host: the guests the fleet runs, those it cannot (broken: a config it cannot read or use, or one that
/// claims what another guest holds), and those being created; and what each of them holds. Everything that hands out a
/// name, an address, an id range or a MAC asks here first, so nothing any guest directory holds, broken or not, is
/// given twice. Thread-safe; the fleet serialises changes of membership with its membership lock on top.
/// </summary>
internal sealed class GuestRegistry
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, GuestRuntime> _guests = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BrokenGuest> _broken = new(StringComparer.Ordinal);
    private readonly Dictionary<string, GuestConfig> _creating = new(StringComparer.Ordinal);

    public GuestRuntime? Find(string name)
    {
        lock (_lock) return _guests.GetValueOrDefault(name);
    }

    public BrokenGuest? FindBroken(string name)
    {
        lock (_lock) return _broken.GetValueOrDefault(name);
    }

    /// <summary>The guests the fleet runs, by name (logs and checks list them in that order).</summary>
    public IReadOnlyList<GuestRuntime> Guests()
    {
        lock (_lock) return _guests.Values.OrderBy(g => g.Config.Name, StringComparer.Ordinal).ToList();
    }

    public IReadOnlyList<BrokenGuest> Broken()
    {
        lock (_lock) return _broken.Values.ToList();
    }

    /// <summary>The names of the guests being created.</summary>
    public IReadOnlyList<string> Creating()
    {
        lock (_lock) return _creating.Keys.ToList();
    }

    /// <summary>The configs of the guests the fleet runs and of those being created.</summary>
    public IReadOnlyList<GuestConfig> Configs()
    {
        lock (_lock) return _guests.Values.Select(g => g.Config).Concat(_creating.Values).ToList();
    }

    /// <summary>What every guest holds: running, being created and broken.</summary>
    public IReadOnlyList<GuestClaims> Claims()
    {
        lock (_lock) return ClaimsLocked().ToList();
    }

    private IEnumerable<GuestClaims> ClaimsLocked() =>
        _guests.Values.Select(g => GuestClaims.Of(g.Config))
            .Concat(_creating.Values.Select(GuestClaims.Of))
            .Concat(_broken.Values.Select(b => b.Claims));

    public bool NameTaken(string name)
    {
        lock (_lock) return NameTakenLocked(name);
    }

    private bool NameTakenLocked(string name) => _guests.ContainsKey(name) || _broken.ContainsKey(name) || _creating.ContainsKey(name);

    /// <summary>The guest (of any state) that holds <paramref name="address"/>, or null.</summary>
    public string? AddressOwner(string address)
    {
        lock (_lock) return ClaimsLocked().FirstOrDefault(c => c.Addresses.Contains(address, StringComparer.Ordinal))?.Name;
    }

    /// <summary>What <paramref name="claims"/> clashes with among the other guests' claims, in one line; null when nothing.</summary>
    public string? Clash(GuestClaims claims)
    {
        lock (_lock) return ClaimsLocked().Where(c => c.Name != claims.Name).Select(claims.Clash).FirstOrDefault(c => c is not null);
    }

    /// <summary>A guest the fleet runs (loaded, or just created).</summary>
    public void Add(GuestRuntime guest)
    {
        lock (_lock)
        {
            _creating.Remove(guest.Config.Name);
            _broken.Remove(guest.Config.Name);
            _guests[guest.Config.Name] = guest;
        }
    }

    /// <summary>A guest the fleet cannot run; what it holds stays held.</summary>
    public void AddBroken(BrokenGuest broken)
    {
        lock (_lock)
        {
            _guests.Remove(broken.Name);
            _broken[broken.Name] = broken;
        }
    }

    /// <summary>Claims a new guest's name, address, ids and MAC while it is made; refuses a name or anything else held.</summary>
    public void BeginCreate(GuestConfig config)
    {
        lock (_lock)
        {
            if (NameTakenLocked(config.Name)) throw FleetException.NameTaken(config.Name);
            var claims = GuestClaims.Of(config);
            if (ClaimsLocked().Select(claims.Clash).FirstOrDefault(c => c is not null) is { } clash)
                throw FleetException.Conflict($"cannot create '{config.Name}': {clash}");
            _creating[config.Name] = config;
        }
    }

    /// <summary>A create that failed: what it claimed is free again.</summary>
    public void AbandonCreate(string name)
    {
        lock (_lock) _creating.Remove(name);
    }

    /// <summary>A guest gone from the host, of any state: what it held is free again.</summary>
    public void Remove(string name)
    {
        lock (_lock)
        {
            _guests.Remove(name);
            _broken.Remove(name);
            _creating.Remove(name);
        }
    }
}
