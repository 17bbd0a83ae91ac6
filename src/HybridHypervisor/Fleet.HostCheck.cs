using System.Text.RegularExpressions;
using HybridHypervisor.Model;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>Something on the host that this agent's roots, bridge or cgroup parent name but no guest owns in the state
/// it is in: a process, mount, loop device, cgroup, interface, directory or nftables rule.</summary>
/// <param name="Kind">process | mount | loop device | cgroup | interface | directory | nftables</param>
/// <param name="Repaired">With --repair: whether it is gone now; <paramref name="Error"/> says why not.</param>
public sealed record HostOrphan(string Kind, string What, string Why, bool Repaired = false, string? Error = null);

/// <param name="Busy">Guests an operation held while the check ran: their things were not judged.</param>
/// <param name="Problems">What is wrong but no repair of the host can fix (broken configs, overlapping id ranges).</param>
public sealed record HostCheckView(IReadOnlyList<HostOrphan> Orphans, IReadOnlyList<string> Busy, IReadOnlyList<string> Problems, int Guests)
{
    /// <summary>The names of the broken guests among <see cref="Problems"/>.</summary>
    public IReadOnlyList<string> Broken { get; init; } = [];
}

/// <summary>
/// <c>vsctl host check [--repair]</c>: everything on the host that carries this agent's names is matched against the
/// guests and the state each is in. A stopped vserver owns its network namespace and veth, a running one also its
/// cgroup, processes and layer mount; a domain owns its tap, a running one its QEMU, virtiofsd and their mounts.
/// Whatever is left (by an agent killed mid-operation, a hand-made mess, a guest removed behind the agent's back) is
/// an orphan, and --repair removes it: processes first, then mounts, loop devices, cgroups, interfaces, directories,
/// and the nftables table is rewritten from the configs. The agent runs the repair itself at every start.
/// </summary>
public sealed partial class Fleet
{
    /// <summary>How long the check lets loop devices of layers just unmounted go by themselves, all of them together.</summary>
    private static readonly TimeSpan LoopSettle = TimeSpan.FromSeconds(3);

    /// <summary>The check under the membership lock and every idle guest's lock; a guest in the middle of an operation
    /// is reported busy and its things are left alone.</summary>
    public async Task<HostCheckView> CheckHostAsync(bool repair, CancellationToken ct = default)
    {
        await _membership.WaitAsync(ct);
        var held = new List<GuestRuntime>();
        try
        {
            var guests = _registry.Guests();
            var broken = _registry.Broken();
            // Guests being provisioned hold no lock a check could take: they are busy until their create returns. No
            // create can begin meanwhile (it claims its name under the membership lock held here).
            var busy = _registry.Creating().ToList();
            foreach (var g in guests)
            {
                if (!await g.Lock.WaitAsync(TimeSpan.FromMilliseconds(200), ct)) busy.Add(g.Config.Name);
                else if (g.Removed) g.Lock.Release(); // destroyed while we waited: whatever still carries its name is an orphan
                else held.Add(g);
            }
            var orphans = CheckHostLocked(held, busy.Concat(broken.Select(b => b.Name)).ToHashSet(StringComparer.Ordinal), repair);
            var problems = broken.Select(b => $"guest '{b.Name}' is broken: {b.Problem}").Concat(IdRangeProblems(guests)).ToList();
            return new HostCheckView(orphans, busy, problems, guests.Count + broken.Count) { Broken = broken.Select(b => b.Name).ToList() };
        }
        finally
        {
            foreach (var g in held) g.Lock.Release();
            _membership.Release();
        }
    }

    /// <summary>Two guests whose host id ranges overlap would own each other's files.</summary>
    private static IEnumerable<string> IdRangeProblems(IReadOnlyList<GuestRuntime> guests)
    {
        var ranges = guests.Select(g => (g.Config.Name, Map: g.Config.Security.IdMap)).Where(r => r.Map is not null)
            .OrderBy(r => r.Map!.HostBase).ToList();
        for (var i = 1; i < ranges.Count; i++)
            if (ranges[i].Map!.HostBase < ranges[i - 1].Map!.HostEnd)
                yield return $"guests '{ranges[i - 1].Name}' and '{ranges[i].Name}' have overlapping host id ranges; recreate one of them";
    }

    /// <summary>What a guest may own right now, by the state it is in.</summary>
    private sealed record Ownership(string Name, GuestKind Kind, bool Running, bool SharedRoot, int? Pid);

    /// <summary>Finds (and with <paramref name="repair"/> removes) the orphans; the caller holds the locks of
    /// <paramref name="guests"/>. Things attributed to <paramref name="untouchable"/> guests are never judged.</summary>
    /// <param name="othersToo">Also judge what other agents left (their resolvers and tables): an operator's check does,
    /// an agent's own repair at its start does not (it cleans up after itself only).</param>
    private List<HostOrphan> CheckHostLocked(IReadOnlyList<GuestRuntime> guests, HashSet<string> untouchable, bool repair, bool othersToo = true)
    {
        var owners = guests.ToDictionary(g => g.Config.Name, g => new Ownership(g.Config.Name, g.Config.Kind, g.IsRunning,
            g.Config.Domain?.Root == DomainRoot.Virtiofs, g.Domain?.Pid ?? g.Vserver?.Monitor.Pid), StringComparer.Ordinal);
        var found = new List<(HostOrphan Orphan, Action Repair)>();
        bool Judged(string name) => !untouchable.Contains(name);
        string Whose(string name) => owners.ContainsKey(name) ? $"guest '{name}' is not running" : $"no guest '{name}' exists";

        // Processes: anything whose command line (or, for virtiofsd in its user namespace, environment) names a guest's
        // run directory belongs to that guest, and only a running guest may have any.
        var runPrefix = _options.RunGuestsRoot + "/";
        foreach (var (pid, cmdline) in ProcessesNaming(runPrefix))
        {
            var name = FirstSegment(cmdline, runPrefix);
            if (name is null || !Judged(name)) continue;
            var qemu = cmdline.Contains("qemu-system", StringComparison.Ordinal);
            var domainProcess = qemu || cmdline.Contains("virtiofsd", StringComparison.Ordinal);
            owners.TryGetValue(name, out var o);
            // A running vserver owns its vsinit processes, a running domain its QEMU (the one it runs) and virtiofsd.
            var why = o is null || !o.Running ? Whose(name)
                : o.Kind == GuestKind.Vserver ? (domainProcess ? $"a domain's process, and '{name}' is a vserver" : null)
                : qemu && pid != o.Pid ? $"a second QEMU of running domain '{name}'" : null;
            if (why is null) continue;
            var program = Path.GetFileName(cmdline.Split(' ')[0]);
            found.Add((new HostOrphan("process", $"pid {pid} ({program})", why), () => KillOrphan(pid, runPrefix + name + "/")));
        }

        // Cgroups below the agent's parent: a running vserver's own.
        foreach (var name in Cgroups.Children(_options.CgroupParent))
        {
            if (!Judged(name) || owners.TryGetValue(name, out var o) && o.Running && o.Kind == GuestKind.Vserver) continue;
            var path = $"{_options.CgroupParent}/{name}";
            found.Add((new HostOrphan("cgroup", path, Whose(name)), () => Cgroups.Open(path)?.Destroy()));
        }

        // Mounts under the state and run roots' guest directories, deepest first so that a repair unmounts children first.
        var mounts = HostMounts.All().Select(m => m.MountPoint).Distinct()
            .Where(m => m.StartsWith(_options.GuestsRoot + "/", StringComparison.Ordinal) || m.StartsWith(runPrefix, StringComparison.Ordinal))
            .OrderByDescending(m => m.Length).ToList();
        foreach (var mount in mounts)
        {
            var name = FirstSegment(mount, _options.GuestsRoot + "/") ?? FirstSegment(mount, runPrefix)!;
            if (name.StartsWith('.'))
            {
                found.Add((new HostOrphan("mount", mount, "inside the leftover of a removed guest"), () => HostMounts.Unmount(mount)));
                continue;
            }
            if (!Judged(name)) continue;
            if (MountOwned(mount, owners.GetValueOrDefault(name))) continue;
            found.Add((new HostOrphan("mount", mount, owners.ContainsKey(name) ? $"guest '{name}' does not use it in the state it is in" : Whose(name)),
                () => HostMounts.Unmount(mount)));
        }

        // Loop devices backing a disk quota's image: a running guest's (its overlay, or a shared root, holds it).
        var settling = System.Diagnostics.Stopwatch.StartNew();
        foreach (var (device, backing) in LayerImage.AttachedLoopDevices().Where(l => l.Backing.StartsWith(_options.GuestsRoot + "/", StringComparison.Ordinal)))
        {
            var name = FirstSegment(backing, _options.GuestsRoot + "/")!;
            if (!name.StartsWith('.') && !Judged(name)) continue;
            if (owners.TryGetValue(name, out var o) && o.Running && (o.Kind == GuestKind.Vserver || o.SharedRoot)) continue;
            // A layer just unmounted stays on its device a moment: the overlay of a run that just ended lets go after its
            // init, and a vserver starting anywhere on the host holds a copy of every host mount from its clone to its
            // pivot_root. Three seconds in all, however many devices there are.
            if (LayerImage.WaitUntilFree(backing, LoopSettle - settling.Elapsed)) continue;
            found.Add((new HostOrphan("loop device", $"{device} ({backing})", name.StartsWith('.') ? "its image was deleted with its guest" : Whose(name)),
                () => HostProgram.Run("losetup", ["-d", device])));
        }

        // Interfaces: on the agent's bridge only a guest's own (a vserver's veth, a domain's tap); a guest's name of the
        // other kind (a tap left by a promotion, a veth by a demotion) anywhere.
        var expected = new Dictionary<string, (string Name, bool Ok)>(StringComparer.Ordinal);
        foreach (var o in owners.Values)
        {
            var paths = _store.PathsFor(o.Name);
            expected[paths.HostVeth] = (o.Name, o.Kind == GuestKind.Vserver);
            expected[paths.Tap] = (o.Name, o.Kind == GuestKind.Domain);
        }
        foreach (var name in untouchable)
        {
            var paths = _store.PathsFor(name);
            expected[paths.HostVeth] = expected[paths.Tap] = (name, true);
        }
        foreach (var link in Directory.EnumerateDirectories("/sys/class/net").Select(Path.GetFileName).OfType<string>())
        {
            var onBridge = MasterOf(link) == Network.BridgeName;
            if (expected.TryGetValue(link, out var e) && e.Ok && !onBridge && owners.ContainsKey(e.Name))
            {
                // The guest's own, but off the bridge (a master that was never set, a bridge deleted under it): the
                // guest has no network. Not an orphan; the repair plugs it back in.
                found.Add((new HostOrphan("interface", link, $"the {(link.StartsWith("vt", StringComparison.Ordinal) ? "tap" : "veth")} of guest '{e.Name}' is not on bridge {Network.BridgeName}"),
                    () => HostProgram.Run("ip", ["link", "set", link, "master", Network.BridgeName, "up"])));
                continue;
            }
            if (e.Name is not null ? e.Ok : !onBridge) continue;
            found.Add((new HostOrphan("interface", link, e.Name is { } n
                    ? $"the {(link.StartsWith("vt", StringComparison.Ordinal) ? "tap" : "veth")} of a {(owners[n].Kind == GuestKind.Vserver ? "domain" : "vserver")}, and '{n}' is a {owners[n].Kind.ToString().ToLowerInvariant()}"
                    : $"on bridge {Network.BridgeName} and no guest's"),
                () => HostProgram.TryRun("ip", ["link", "del", link])));
        }

        // Directories: what a destroy left half-deleted, a run directory of no guest, a create that never wrote a config.
        foreach (var dir in Directory.Exists(_options.GuestsRoot) ? Directory.EnumerateDirectories(_options.GuestsRoot) : [])
        {
            var name = Path.GetFileName(dir);
            if (name.StartsWith('.'))
                found.Add((new HostOrphan("directory", dir, "the leftover of a removed guest"), () => Directory.Delete(dir, recursive: true)));
            else if (!owners.ContainsKey(name) && !untouchable.Contains(name) && _store.IsStillborn(name))
                found.Add((new HostOrphan("directory", dir, "a create that died before it wrote a config"), () => Directory.Delete(dir, recursive: true)));
        }
        foreach (var dir in Directory.Exists(_options.RunGuestsRoot) ? Directory.EnumerateDirectories(_options.RunGuestsRoot) : [])
        {
            var name = Path.GetFileName(dir);
            if (owners.ContainsKey(name) || untouchable.Contains(name)) continue;
            found.Add((new HostOrphan("directory", dir, Whose(name)), () =>
            {
                foreach (var m in HostMounts.All().Select(m => m.MountPoint).Where(m => m.StartsWith(dir + "/", StringComparison.Ordinal)).Reverse())
                    HostMounts.Unmount(m);
                Directory.Delete(dir, recursive: true);
            }));
        }

        found.AddRange(NetworkOrphans(othersToo));

        // Published ports, outbound NAT and the routed range: the live table against what the configs and settings ask for.
        lock (_portsLock)
        {
            var want = ForwardKeys(PortForwarding.Render(Network.BridgeName, ExpectedRules(quiet: true)));
            var have = ForwardKeys(Network.ListForwards() ?? "");
            var extra = have.Except(want).ToList();
            var missing = want.Except(have).ToList();
            if (extra.Count + missing.Count > 0)
                found.Add((new HostOrphan("nftables", $"table {Network.PortTable}",
                    string.Join("; ", extra.Select(r => $"{r}: no guest publishes it").Concat(missing.Select(r => $"{r}: published but missing")))),
                    () => ApplyPortsLocked()));
        }

        if (!repair) return found.Select(f => f.Orphan).ToList();
        var result = new List<HostOrphan>();
        foreach (var (orphan, action) in found)
        {
            try
            {
                action();
                result.Add(orphan with { Repaired = true });
                _log($"host check: removed {orphan.Kind} {orphan.What} ({orphan.Why})");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or HostProgramException
                                          or Vserver.Isolation.Cgroups.CgroupException or InvalidOperationException)
            {
                result.Add(orphan with { Error = e.Message });
                _log($"host check: removing {orphan.Kind} {orphan.What} failed: {e.Message}");
            }
        }
        return result;
    }

    /// <summary>A mount under a guest's directories that the guest uses in its present state: its network namespace
    /// (vservers, any state), the disk quota's layer (while it runs, also as a shared root), a shared root's mounts.</summary>
    private bool MountOwned(string mount, Ownership? o)
    {
        if (o is null) return false;
        var paths = _store.PathsFor(o.Name);
        if (mount == paths.Netns) return o.Kind == GuestKind.Vserver;
        if (mount == paths.LayerMount) return o.Running && (o.Kind == GuestKind.Vserver || o.SharedRoot);
        if (mount.StartsWith(paths.VirtiofsDir + "/", StringComparison.Ordinal) || mount == paths.VirtiofsDir || mount == paths.Rootfs)
            return o.Running && o.SharedRoot;
        // Anything else under a running guest is its own business; under a stopped one nothing else belongs.
        return o.Running;
    }

    /// <summary>The guest name right after <paramref name="prefix"/> in <paramref name="text"/>, or null.</summary>
    private static string? FirstSegment(string text, string prefix)
    {
        var at = text.IndexOf(prefix, StringComparison.Ordinal);
        if (at < 0) return null;
        var rest = text[(at + prefix.Length)..];
        var end = rest.IndexOfAny(['/', ' ', '\0']);
        var name = end < 0 ? rest : rest[..end];
        return name.Length > 0 ? name : null;
    }

    /// <summary>Processes (not this agent) whose command line, or environment when it is a virtiofsd, names a path under
    /// <paramref name="prefix"/>; the command line with NULs as spaces.</summary>
    private static IEnumerable<(int Pid, string Cmdline)> ProcessesNaming(string prefix)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId) continue;
            string cmdline;
            try
            {
                cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (!cmdline.Contains(prefix, StringComparison.Ordinal) && cmdline.Contains("virtiofsd", StringComparison.Ordinal)
                    && File.ReadAllText(Path.Combine(dir, "environ")).Split('\0').FirstOrDefault(v => v.StartsWith("VSERVER_GUEST_RUN=", StringComparison.Ordinal)) is { } run)
                    cmdline += " " + run["VSERVER_GUEST_RUN=".Length..] + "/";
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            if (cmdline.Contains(prefix, StringComparison.Ordinal)) yield return (pid, cmdline.TrimEnd());
        }
    }

    /// <summary>SIGKILL to an orphan, through a pidfd opened after checking it still names the same directory (the pid
    /// may have been reused since the scan).</summary>
    private static void KillOrphan(int pid, string names)
    {
        using var handle = ProcessHandle.TryOpen(pid);
        if (handle is null) return;
        var cmdline = "";
        try
        {
            cmdline = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ') + " " + File.ReadAllText($"/proc/{pid}/environ").Replace('\0', ' ');
        }
        catch (IOException)
        {
            return;
        }
        if (!cmdline.Contains(names.TrimEnd('/'), StringComparison.Ordinal)) return;
        handle.Signal(9);
        if (!handle.Exited.Wait(TimeSpan.FromSeconds(5))) throw new InvalidOperationException($"pid {pid} did not end within 5 s of SIGKILL");
    }

    private static string? MasterOf(string link)
    {
        try
        {
            var target = new FileInfo($"/sys/class/net/{link}/master").LinkTarget;
            return target is null ? null : Path.GetFileName(target);
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>"tcp 8080 -> 10.0.0.2:80" for each DNAT rule of a table's text (rendered or as nft lists it).</summary>
    /// <summary>What the table does, as comparable keys: each forward, the masquerade of the way out, the rule that keeps
    /// guests in with NAT off, the routed range and the resolver's guard.</summary>
    private static HashSet<string> ForwardKeys(string table) =>
        ForwardRule().Matches(table).Select(m => $"{m.Groups[1].Value} {m.Groups[2].Value} -> {m.Groups[3].Value}")
            .Concat(OutboundRule().Matches(table).Select(m => m.Groups[1].Success ? "outbound NAT (masquerade)" : "guests kept in (NAT off)"))
            .Concat(RoutedElements().Matches(table).Select(m => $"routed range {m.Groups[1].Value}"))
            .Concat(ResolverGuard().IsMatch(table) ? ["the resolver's guard"] : [])
            .ToHashSet(StringComparer.Ordinal);

    [GeneratedRegex(@"ip saddr [0-9./]+ oifname != ""[^""]+"" (masquerade)|ip saddr != @routed ct state new drop")]
    private static partial Regex OutboundRule();

    [GeneratedRegex(@"elements = \{ ([0-9./, ]+) \}")]
    private static partial Regex RoutedElements();

    [GeneratedRegex(@"th dport 53 drop")]
    private static partial Regex ResolverGuard();

    [GeneratedRegex(@"(tcp|udp) dport (\d+) dnat (?:ip )?to ([0-9.]+:\d+)")]
    private static partial Regex ForwardRule();
}
