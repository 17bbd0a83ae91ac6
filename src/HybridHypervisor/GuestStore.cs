using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using HybridHypervisor.Model;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>Where one guest's files live: its config and writable layer under the state root, its runtime files
/// (pid, exit, netns, specs) under the run root.</summary>
public sealed record GuestPaths(string Dir, string RunDir, string HostVeth, string CgroupPath)
{
    /// <summary>The guests directory of the state root and of the run root: what this guest's paths are opened beneath
    /// (<see cref="StateFile"/>), no link followed.</summary>
    public string GuestsRoot => Path.GetDirectoryName(Dir)!;
    public string RunGuestsRoot => Path.GetDirectoryName(RunDir)!;

    /// <summary>What the guest's directory may hold that the agent hands to the kernel, vsinit or QEMU (mounted,
    /// loop-attached, opened for append), and of which kind each must be. A link or a FIFO in one of these places would
    /// have the agent mount, write or serve something outside the state root.</summary>
    private (string Path, StateEntry Kind)[] Entries =>
    [
        (Dir, StateEntry.Directory), (Upper, StateEntry.Directory), (Work, StateEntry.Directory), (Rootfs, StateEntry.Directory),
        (LayerMount, StateEntry.Directory), (LayerImage, StateEntry.RegularFile), (Disk, StateEntry.RegularFile),
        (Ext4Disk, StateEntry.RegularFile), (Console, StateEntry.RegularFile), (Intent, StateEntry.RegularFile),
    ];

    /// <summary>The first entry of the guest's directory that is there but not of its kind (a link, a FIFO, a file for a
    /// directory), in one line naming it; null when all are right or absent.</summary>
    public string? LayoutProblem() =>
        Entries.Select(e => StateFile.ShapeProblem(GuestsRoot, e.Path, e.Kind)).FirstOrDefault(p => p is not null);

    /// <summary>Refuses to hand the guest's files to the host (a start, a mount) when <see cref="LayoutProblem"/> finds one.</summary>
    public void RequireLayout(string guest)
    {
        if (LayoutProblem() is { } problem) throw FleetException.Broken(guest, problem);
    }

    public string Config => Path.Combine(Dir, "guest.json");
    /// <summary>The intent journal of an operation in flight (see <see cref="Model.GuestIntent"/>).</summary>
    public string Intent => Path.Combine(Dir, "intent.json");
    /// <summary>A vserver's writable layer without a disk quota; with one, see <see cref="Vservers.WritableLayer"/>.</summary>
    public string Upper => Path.Combine(Dir, "upper");
    public string Work => Path.Combine(Dir, "work");
    /// <summary>Vservers with a disk quota: the ext4 image of the quota's size, and where the agent loop-mounts it
    /// (upper/ and work/ inside) while the guest runs.</summary>
    public string LayerImage => Path.Combine(Dir, "layer.ext4");
    public string LayerMount => Path.Combine(Dir, "layer");
    public string Rootfs => Path.Combine(Dir, "rootfs");
    public string Console => Path.Combine(Dir, "console.log");
    public string Netns => Path.Combine(RunDir, "netns");
    public string Spec => Path.Combine(RunDir, "vsinit.spec");
    public string PidFile => Path.Combine(RunDir, "pid");
    public string ExitFile => Path.Combine(RunDir, "exit");
    /// <summary>The compiled seccomp filter vsinit loads at start and at every exec.</summary>
    public string SeccompFilter => Path.Combine(RunDir, "seccomp.bpf");
    /// <summary>Vservers: the guest's /proc/meminfo (bound over it by vsinit, same inode) and the source of the monitor's
    /// sysinfo(2) answers; rewrite it in place, never replace it, or the guest keeps seeing the old file.</summary>
    public string Meminfo => Path.Combine(RunDir, "meminfo");
    /// <summary>Vservers: where the monitor takes the seccomp listeners of vsctl exec, to answer their sysinfo(2) too.</summary>
    public string NotifySocket => Path.Combine(RunDir, "notify.sock");
    /// <summary>Domains: the root disk, a qcow2 overlay over the image's ext4 base.</summary>
    public string Disk => Path.Combine(Dir, "disk.qcow2");
    /// <summary>Domains promoted with --copy: the root disk, a raw ext4 image of the vserver's files.</summary>
    public string Ext4Disk => Path.Combine(Dir, "disk.ext4");
    /// <summary>Domains with a virtiofs root: virtiofsd's socket and lock directory (owned by the guest's root), with
    /// root/ where the shared tree is bound in virtiofsd's own mount namespace.</summary>
    public string VirtiofsDir => Path.Combine(RunDir, "virtiofs");
    public string VirtiofsSocket => Path.Combine(VirtiofsDir, "sock");
    public string VirtiofsdPidFile => Path.Combine(RunDir, "virtiofsd.pid");
    public string VirtiofsdLog => Path.Combine(RunDir, "virtiofsd.log");
    public string QmpSocket => Path.Combine(RunDir, "qmp.sock");
    /// <summary>Domains: QEMU's serial console socket (one client at a time); QEMU appends all output to <see cref="Console"/>.</summary>
    public string ConsoleSocket => Path.Combine(RunDir, "console.sock");
    /// <summary>Domains: the virtio-serial port of the guest agent.</summary>
    public string AgentSocket => Path.Combine(RunDir, "agent.sock");
    /// <summary>Domains booted held (a promotion's cut-over): the virtio-serial port on which the initramfs says it is
    /// ready and waits for "go" before it sets up the network and mounts the root.</summary>
    public string HoldSocket => Path.Combine(RunDir, "hold.sock");
    /// <summary>Domains: what QEMU printed on stdout and stderr in its current or last run.</summary>
    public string QemuLog => Path.Combine(RunDir, "qemu.log");
    /// <summary>Domains: the tap on the bridge, named like the vserver's veth but with "vt".</summary>
    public string Tap => "vt" + HostVeth[2..];
    /// <summary>Present while an operator's stop is under way, so an agent restarted mid-stop does not restart the guest.</summary>
    public string StoppingMarker => Path.Combine(RunDir, "stopping");
}

/// <summary>A guest the fleet cannot run (its config unreadable or unusable); it is listed as broken, the others load
/// normally, and what it holds on the host (<see cref="Claims"/>: as much as could be read) stays its own.</summary>
public sealed record BrokenGuest(string Name, string Problem)
{
    public Guests.GuestClaims Claims { get; init; } = new(Name);
}

/// <summary>Reads and writes guest configs: one readable JSON file per guest, replaced atomically.</summary>
public sealed class GuestStore(FleetOptions options, Func<Vserver.Isolation.Network.Ipv4Subnet?>? routed = null)
{
    public GuestPaths PathsFor(string name) => new(
        Path.Combine(options.GuestsRoot, name),
        Path.Combine(options.RunGuestsRoot, name),
        HostVethName(name),
        $"{options.CgroupParent}/{name}");

    /// <summary>A host interface name (at most 15 chars) that is stable for this state root and guest name, so a
    /// guest whose config is lost can still have its veth found and removed.</summary>
    public string HostVethName(string name)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{options.StateRoot}\0{name}"));
        return "vs" + Convert.ToHexStringLower(hash)[..11];
    }

    /// <summary>What a config that no longer loads as a whole still says its guest holds (address, id range, MAC), as
    /// far as it can be read, so none of it is handed out twice.</summary>
    public Guests.GuestClaims TryReadClaims(string name)
    {
        var claims = new Guests.GuestClaims(name);
        try
        {
            if (StateFile.TryReadAllBytes(options.StateRoot, PathsFor(name).Config) is not { } bytes) return claims;
            using var doc = JsonDocument.Parse(bytes);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return claims;
            if (root.TryGetProperty("network", out var network) && network.ValueKind == JsonValueKind.Object)
            {
                if (network.TryGetProperty("ipv4", out var ipv4) && ipv4.ValueKind == JsonValueKind.String) claims = claims with { Address = ipv4.GetString() };
                if (network.TryGetProperty("mac", out var mac) && mac.ValueKind == JsonValueKind.String) claims = claims with { Mac = mac.GetString() };
                if (network.TryGetProperty("ports", out var ports) && ports.ValueKind == JsonValueKind.Array)
                    claims = claims with
                    {
                        Ports = ports.EnumerateArray()
                            .Where(p => p.ValueKind == JsonValueKind.Object && p.TryGetProperty("hostPort", out var h) && h.ValueKind == JsonValueKind.Number)
                            .Select(p => $"{p.GetProperty("hostPort").GetInt32()}/{(p.TryGetProperty("protocol", out var proto) && proto.ValueKind == JsonValueKind.String ? proto.GetString() : "tcp")}")
                            .ToList(),
                    };
            }
            if (root.TryGetProperty("security", out var security) && security.ValueKind == JsonValueKind.Object
                && security.TryGetProperty("idMap", out var map) && map.ValueKind == JsonValueKind.Object
                && map.TryGetProperty("hostBase", out var hostBase) && map.TryGetProperty("count", out var count))
                claims = claims with { Ids = new IdMap(hostBase.GetInt64(), count.GetInt64()) };
        }
        catch (Exception e) when (e is IOException or JsonException or InvalidOperationException or FormatException or UnauthorizedAccessException)
        {
        }
        return claims;
    }

    /// <summary>Replaces the guest's config whole; on a full state disk the old one stays and the refusal says so.</summary>
    public void Save(GuestConfig config)
    {
        var paths = PathsFor(config.Name);
        StateDiskSpace.Write(paths.Config, options.StateRoot, () =>
        {
            Directory.CreateDirectory(paths.Dir);
            AtomicFile.WriteAllText(paths.Config, JsonSerializer.Serialize(config, ConfigJson.Default.GuestConfig) + "\n", beneath: options.StateRoot);
        });
    }

    /// <summary>Records an operation before its first side effect (see <see cref="GuestIntent"/>).</summary>
    public void BeginIntent(string name, GuestIntent intent) =>
        AtomicFile.WriteAllText(PathsFor(name).Intent, JsonSerializer.Serialize(intent, ConfigJson.Default.GuestIntent) + "\n", beneath: options.StateRoot);

    /// <summary>The operation is over (finished or rolled back).</summary>
    public void EndIntent(string name)
    {
        var path = PathsFor(name).Intent;
        if (StateFile.Inspect(options.StateRoot, path) == StateEntry.Missing) return;
        File.Delete(path);
        AtomicFile.FsyncDirectory(Path.GetDirectoryName(path)!);
    }

    /// <summary>The journal an agent that died left, or null; a torn or unreadable one (it cannot be: it is written
    /// atomically) counts as none. One that is not a regular file never gets here: <see cref="Load"/> makes its guest
    /// broken.</summary>
    public GuestIntent? ReadIntent(string name)
    {
        var path = PathsFor(name).Intent;
        try
        {
            return StateFile.TryReadAllBytes(options.StateRoot, path) is { } bytes
                ? JsonSerializer.Deserialize(bytes, ConfigJson.Default.GuestIntent)
                : null;
        }
        catch (Exception e) when (e is JsonException or StateFileException)
        {
            return null;
        }
    }

    /// <summary>A guest directory holding nothing but a config's temp file: a create that died before its config's first
    /// write finished. It never existed; it is removed, not listed as broken.</summary>
    public bool IsStillborn(string name)
    {
        var paths = PathsFor(name);
        try
        {
            // A link in place of the directory is never looked through (nor removed with what it points to).
            return StateFile.Inspect(options.StateRoot, paths.Dir) == StateEntry.Directory
                && StateFile.Inspect(options.StateRoot, paths.Config) == StateEntry.Missing
                && Directory.EnumerateFileSystemEntries(paths.Dir).All(e => Path.GetFileName(e).StartsWith(".guest.json.tmp-", StringComparison.Ordinal));
        }
        catch (StateFileException)
        {
            return false;
        }
    }

    public (IReadOnlyList<GuestConfig> Guests, IReadOnlyList<BrokenGuest> Broken) LoadAll(int hostCpus)
    {
        var guests = new List<GuestConfig>();
        var broken = new List<BrokenGuest>();
        if (!Directory.Exists(options.GuestsRoot)) return (guests, broken);
        foreach (var dir in Directory.EnumerateDirectories(options.GuestsRoot).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(dir);
            if (name.StartsWith('.')) continue;
            if (IsStillborn(name))
            {
                Directory.Delete(dir, recursive: true);
                continue;
            }
            var (config, problem) = Load(name, hostCpus);
            if (config is not null) guests.Add(config);
            else broken.Add(new BrokenGuest(name, problem!) { Claims = TryReadClaims(name) });
        }
        return (guests, broken);
    }

    /// <summary>The source-generated reader leaves sections a hand-edited file omits (or sets to null) null instead of
    /// using the record's initializers (dotnet/runtime#84484); give them the declared defaults.</summary>
    private static GuestConfig WithDefaults(GuestConfig c)
    {
#pragma warning disable CA1508 // null despite the non-nullable declaration, see above
        var security = c.Security ?? new GuestSecurity();
        return c with
        {
            Limits = c.Limits ?? new GuestLimits(),
            Network = c.Network is { } network ? network with { Ports = network.Ports ?? [] } : new GuestNetworkConfig(),
            Security = security with { AllowSyscalls = security.AllowSyscalls ?? [] },
            History = c.History ?? [],
        };
#pragma warning restore CA1508
    }

    /// <summary>
    /// A guest's config as the fleet may act on it, or the one line that says why it cannot be: guests/NAME must be a
    /// directory and guest.json a regular file, both reached through no link (<see cref="StateFile"/>); intent.json, if
    /// there, a regular file too; the JSON must parse (the error names the file and the position, never what is there:
    /// the file may be anything a link or an operator put in its place); and the config must pass the checks a create
    /// passes (<see cref="GuestConfigValidator.Validate"/>), with the id map inside this host's range.
    /// </summary>
    public (GuestConfig? Config, string? Problem) Load(string name, int hostCpus)
    {
        var paths = PathsFor(name);
        var path = paths.Config;
        byte[]? bytes;
        try
        {
            var dir = StateFile.Inspect(options.StateRoot, paths.Dir);
            if (dir != StateEntry.Directory) return (null, $"{paths.Dir} is {StateFile.Describe(dir)}, not a directory");
            bytes = StateFile.TryReadAllBytes(options.StateRoot, path);
            if (bytes is null) return (null, $"{path} is missing");
            if (paths.LayoutProblem() is { } layout) return (null, layout);
        }
        catch (StateFileException e)
        {
            return (null, e.Message);
        }
        GuestConfig? config;
        try
        {
            config = JsonSerializer.Deserialize(bytes, ConfigJson.Default.GuestConfig);
        }
        catch (JsonException e)
        {
            return (null, $"{path}: {JsonProblem(e)}");
        }
        if (config is null) return (null, $"{path}: empty config");
        config = WithDefaults(config);
        if (config.Name != name)
            return (null, $"{path}: the config names another guest than its directory '{name}'; fix the name in the file");
        if (GuestConfigValidator.Validate(config, options.Subnet, hostCpus, options.IdRange, routed?.Invoke()) is { } error)
            return (null, $"{path}: {error}");
        return (config, null);
    }

    /// <summary>Where a config failed to parse, never what is there: System.Text.Json's own message quotes the offending
    /// character (the first byte of whatever a link pointed at) and the JSON path names keys from the file.</summary>
    internal static string JsonProblem(JsonException e) =>
        e.LineNumber is { } line ? $"invalid JSON at line {line + 1}, byte {(e.BytePositionInLine ?? 0) + 1}" : "invalid JSON";
}
