using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>The built binaries under test: bin/ of the repository, or VSERVER_BIN.</summary>
public static class Binaries
{
    public static string Dir { get; } = Environment.GetEnvironmentVariable("VSERVER_BIN") is { Length: > 0 } bin ? bin : FindRepoBin();

    public static string Vsctl => Path.Combine(Dir, "vsctl");
    public static string Vserverd => Path.Combine(Dir, "vserverd");

    private static string FindRepoBin()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Vserver.sln"))) return Path.Combine(dir.FullName, "bin");
        throw new InvalidOperationException("cannot find the repository's bin/; run make build or set VSERVER_BIN");
    }
}

public sealed record CommandResult(int Code, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {Code}\nstdout: {Stdout}\nstderr: {Stderr}";
}

/// <summary>
/// One isolated vserver host for a test: its own state and run roots, bridge, subnet and cgroup parent, and its own
/// vserverd. Everything it made is removed on dispose, even when the test failed.
/// </summary>
public sealed class TestHost : IAsyncDisposable
{
    private Process? _agent;
    private readonly StringBuilder _agentLog = new();
    /// <summary>Every guest name this host has been asked to create or has listed: whatever carries one of these names
    /// and belongs to no listed guest is a leftover, even when its directory (by which cleanup finds guests) is gone.</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _names = new(StringComparer.Ordinal);

    public string Id { get; }
    public string Dir { get; }
    public string Root => Path.Combine(Dir, "root");
    public string RunDir => Path.Combine(Dir, "run");
    public string Bridge { get; }
    public string Subnet { get; }
    public string SubnetPrefix { get; }
    public string CgroupParent { get; }
    public string Socket => Path.Combine(RunDir, "agent.sock");
    public int AgentPid => _agent?.Id ?? 0;
    public string AgentLog
    {
        get
        {
            lock (_agentLog) return _agentLog.ToString();
        }
    }

    private TestHost()
    {
        Id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        Dir = Directory.CreateTempSubdirectory("vstest-").FullName;
        // The guests' resolver drops root for the dnsmasq user, who must reach its files under the run root, as under
        // /run/vserver; a temporary directory is made 0700.
        File.SetUnixFileMode(Dir, (UnixFileMode)Convert.ToInt32("711", 8));
        Bridge = $"vst{Id}";
        CgroupParent = $"vstest-{Id}";
        // A /24 no other test (or anything else on this host) routes to.
        while (true)
        {
            var third = RandomNumberGenerator.GetInt32(0, 256);
            var second = RandomNumberGenerator.GetInt32(200, 250);
            SubnetPrefix = $"10.{second}.{third}";
            Subnet = $"{SubnetPrefix}.0/24";
            var routes = Run("ip", "route", "show", Subnet);
            if (routes.Stdout.Trim().Length == 0) break;
        }
    }

    public IReadOnlyDictionary<string, string> Env => new Dictionary<string, string>
    {
        ["VSERVER_ROOT"] = Root,
        ["VSERVER_RUN"] = RunDir,
        ["VSERVER_BRIDGE"] = Bridge,
        ["VSERVER_SUBNET"] = Subnet,
        ["VSERVER_CGROUP_PARENT"] = CgroupParent,
    };

    /// <summary>A host with a running agent and the busybox image built.</summary>
    public static async Task<TestHost> StartAsync(bool buildImage = true)
    {
        var host = new TestHost();
        try
        {
            await host.StartAgentAsync();
            if (buildImage) host.Vsctl("image", "build", "busybox").ShouldSucceed();
            return host;
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    public static TestHost CreateWithoutAgent() => new();

    public async Task StartAgentAsync(IReadOnlyDictionary<string, string>? extraEnv = null)
    {
        var psi = new ProcessStartInfo(Binaries.Vserverd) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var (k, v) in Env) psi.Environment[k] = v;
        if (extraEnv is not null)
            foreach (var (k, v) in extraEnv) psi.Environment[k] = v;
        var agent = Process.Start(psi)!;
        _agent = agent;
        agent.ErrorDataReceived += (_, e) => { lock (_agentLog) _agentLog.AppendLine(e.Data); };
        agent.OutputDataReceived += (_, e) => { lock (_agentLog) _agentLog.AppendLine(e.Data); };
        agent.BeginErrorReadLine();
        agent.BeginOutputReadLine();
        using var client = new AgentClient(Socket);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            if (agent.HasExited) throw new InvalidOperationException($"vserverd exited with {agent.ExitCode}:\n{AgentLog}");
            try
            {
                await client.HostAsync();
                return;
            }
            catch (AgentUnavailableException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }

    /// <summary>Ends the agent the hard way, as a crash or OOM kill would.</summary>
    public async Task KillAgentAsync()
    {
        if (_agent is null) return;
        _agent.Kill();
        await _agent.WaitForExitAsync();
        _agent.Dispose();
        _agent = null;
    }

    public async Task<int> WaitForAgentExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _agent!.WaitForExitAsync(cts.Token);
        var code = _agent.ExitCode;
        _agent.Dispose();
        _agent = null;
        return code;
    }

    public AgentClient Client() => new(Socket);

    public CommandResult Vsctl(params string[] args) => VsctlWith(null, args);

    public CommandResult VsctlWith(string? stdin, params string[] args)
    {
        var env = new Dictionary<string, string>(Env) { ["VSCTL_NO_AUTOSTART"] = "1" };
        if (args is ["create", var created, ..]) Seen(created);
        return RunWith(env, stdin, Binaries.Vsctl, args);
    }

    public static CommandResult Run(string program, params string[] args) => RunWith(null, null, program, args);

    public static CommandResult RunWith(IReadOnlyDictionary<string, string>? env, string? stdin, string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null)
            foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        // Building an image or a kernel unpacks Debian packages: on a loaded 2-core machine it took over 90 s.
        var limit = args is ["kernel" or "image", "build", ..] ? TimeSpan.FromMinutes(5) : TimeSpan.FromSeconds(90);
        if (!p.WaitForExit(limit))
        {
            p.Kill(true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in {limit.TotalSeconds:0} s");
        }
        return new CommandResult(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Records guest names the test made some other way (the API, a hosting file).</summary>
    public void Seen(string guest) => _names.TryAdd(guest, 0);

    /// <summary>The host interface name the agent derives for a guest's veth (same rule as GuestStore).</summary>
    public string HostVeth(string guest)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes($"{Root}\0{guest}"));
        return "vs" + Convert.ToHexStringLower(hash)[..11];
    }

    /// <summary>The tap the agent derives for a domain (its veth name with "vt").</summary>
    public string Tap(string guest) => "vt" + HostVeth(guest)[2..];

    public string GuestDir(string guest) => Path.Combine(Root, "guests", guest);

    /// <summary>The nftables table (family ip) in which this host's agent keeps its published ports.</summary>
    public string PortsTable => $"vserver_{Bridge}";

    /// <summary>Pids of QEMU processes started for this host (their command lines name its directory).</summary>
    public IReadOnlyList<int> QemuPids(string? guest = null)
    {
        var needle = guest is null ? Dir + "/" : Path.Combine(RunDir, "guests", guest) + "/";
        return Processes().Where(p => p.CommandLine.Contains("qemu-system", StringComparison.Ordinal) && p.CommandLine.Contains(needle, StringComparison.Ordinal))
            .Select(p => p.Pid).ToList();
    }

    /// <summary>Pids of virtiofsd processes serving this host's guests (their command line or, inside a user namespace,
    /// their environment names the guest's run directory).</summary>
    public IReadOnlyList<int> VirtiofsdPids(string? guest = null)
    {
        var needle = guest is null ? Dir + "/" : Path.Combine(RunDir, "guests", guest) + "/";
        var pids = new List<int>();
        foreach (var (pid, cmdline) in Processes().Where(p => p.CommandLine.Contains("virtiofsd", StringComparison.Ordinal)))
        {
            try
            {
                var environ = File.ReadAllText($"/proc/{pid}/environ").Replace('\0', ' ') + " ";
                if (cmdline.Contains(needle, StringComparison.Ordinal) || environ.Contains($"VSERVER_GUEST_RUN={needle.TrimEnd('/')} ", StringComparison.Ordinal)
                    || (guest is null && environ.Contains($"VSERVER_GUEST_RUN={needle}", StringComparison.Ordinal)))
                    pids.Add(pid);
            }
            catch (IOException)
            {
            }
        }
        return pids;
    }

    /// <summary>The cgroup hierarchies to look in: each v1 hierarchy (and a v2 one mounted beside them), or on a pure
    /// cgroup v2 host the one unified tree.</summary>
    public static IReadOnlyList<string> CgroupHierarchies =>
        File.Exists("/sys/fs/cgroup/cgroup.controllers") ? ["/sys/fs/cgroup"] : Directory.EnumerateDirectories("/sys/fs/cgroup").ToList();

    public bool CgroupExists(string guest) =>
        CgroupHierarchies.Any(h => Directory.Exists(Path.Combine(h, CgroupParent, guest)));

    /// <summary>What a failed create or a destroy must not leave: the guest's dir, veth, netns mount, cgroup, processes.</summary>
    public void ShouldHaveNoTraceOf(string guest)
    {
        Directory.Exists(GuestDir(guest)).ShouldBeFalse($"guest dir of {guest} left behind");
        Directory.Exists(Path.Combine(RunDir, "guests", guest)).ShouldBeFalse($"run dir of {guest} left behind");
        Directory.Exists($"/sys/class/net/{HostVeth(guest)}").ShouldBeFalse($"veth of {guest} left behind");
        File.ReadAllText("/proc/self/mountinfo").ShouldNotContain($"/guests/{guest}/", customMessage: $"mount of {guest} left behind");
        CgroupExists(guest).ShouldBeFalse($"cgroup of {guest} left behind");
        Directory.Exists($"/sys/class/net/{Tap(guest)}").ShouldBeFalse($"tap of {guest} left behind");
        QemuPids(guest).ShouldBeEmpty($"QEMU of {guest} left running");
        VirtiofsdPids(guest).ShouldBeEmpty($"virtiofsd of {guest} left running");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_agent is not null && !_agent.HasExited && File.Exists(Socket))
            {
                using var client = Client();
                try
                {
                    foreach (var g in (await client.ListAsync()).Guests)
                    {
                        Seen(g.Name);
                        try
                        {
                            await client.DestroyAsync(g.Name, force: true);
                        }
                        catch (ApiException)
                        {
                        }
                    }
                }
                catch (Exception)
                {
                }
            }
        }
        finally
        {
            await KillAgentAsync();
            CleanUpLeftovers();
        }
    }

    /// <summary>Removes whatever the agent could not: processes in our cgroups, netns mounts, veths, the bridge, cgroups, files.</summary>
    private void CleanUpLeftovers()
    {
        PowerOff();
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>
    /// What a power cut and reboot do to this host's guests, short of the state root: the agent and every guest process
    /// killed, every mount and loop device under the test's directory gone, the guests' interfaces, the bridge, the
    /// published ports' table and the cgroups gone, and the run root (a tmpfs after a real reboot) emptied.
    /// </summary>
    public async Task SimulateHostRestartAsync()
    {
        await KillAgentAsync();
        PowerOff();
        if (Directory.Exists(RunDir)) Directory.Delete(RunDir, recursive: true);
    }

    private void PowerOff()
    {
        foreach (var hierarchy in CgroupHierarchies)
        {
            var parent = Path.Combine(hierarchy, CgroupParent);
            if (!Directory.Exists(parent)) continue;
            foreach (var cg in Directory.EnumerateDirectories(parent).Append(parent).ToList())
            {
                if (File.Exists(Path.Combine(cg, "freezer.state"))) TryWrite(Path.Combine(cg, "freezer.state"), "THAWED");
                if (File.Exists(Path.Combine(cg, "cgroup.procs")))
                    foreach (var line in File.ReadAllLines(Path.Combine(cg, "cgroup.procs")))
                        if (int.TryParse(line, out var pid)) Run("kill", "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        foreach (var pid in QemuPids().Concat(VirtiofsdPids()).Concat(ProcessesNaming(RunDir + "/")))
            Run("kill", "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Thread.Sleep(100);
        foreach (var mountPoint in MountsUnder(Dir).Reverse()) Run("umount", "-l", mountPoint);
        foreach (var (device, _) in LoopDevicesUnder(Dir)) Run("losetup", "-d", device);
        var guestsDir = Path.Combine(Root, "guests");
        foreach (var g in (Directory.Exists(guestsDir) ? Directory.EnumerateDirectories(guestsDir).Select(Path.GetFileName).OfType<string>() : [])
                 .Concat(_names.Keys).Distinct())
            foreach (var link in new[] { HostVeth(g), Tap(g) })
                if (Directory.Exists($"/sys/class/net/{link}")) Run("ip", "link", "del", link);
        // The published ports' table of this host's agent (named after its bridge); nobody else's. Before the bridge: a
        // table whose bridge is gone is what another test's host check reports as an orphan of a dead agent.
        Run("nft", "delete", "table", "ip", PortsTable);
        Run("ip", "link", "del", Bridge);
        foreach (var hierarchy in CgroupHierarchies)
        {
            var parent = Path.Combine(hierarchy, CgroupParent);
            if (!Directory.Exists(parent)) continue;
            foreach (var cg in Directory.EnumerateDirectories(parent)) TryRmdir(cg);
            TryRmdir(parent);
        }
    }

    public bool AgentAlive => _agent is { HasExited: false };

    /// <summary>Mount points at or below <paramref name="dir"/>, in mountinfo's order (parents first).</summary>
    public static IReadOnlyList<string> MountsUnder(string dir) =>
        File.ReadAllLines("/proc/self/mountinfo").Select(l => UnescapeMount(l.Split(' ')[4]))
            .Where(m => m == dir || m.StartsWith(dir + "/", StringComparison.Ordinal)).ToList();

    private static string UnescapeMount(string field) =>
        System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-3][0-7]{2})", m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());

    /// <summary>Loop devices whose backing file lies under <paramref name="dir"/>, with that file.</summary>
    public static IReadOnlyList<(string Device, string Backing)> LoopDevicesUnder(string dir)
    {
        var devices = new List<(string, string)>();
        foreach (var block in Directory.EnumerateDirectories("/sys/block", "loop*"))
        {
            try
            {
                var backing = File.ReadAllText(Path.Combine(block, "loop", "backing_file")).Trim();
                if (backing.StartsWith(dir + "/", StringComparison.Ordinal)) devices.Add(("/dev/" + Path.GetFileName(block), backing));
            }
            catch (IOException)
            {
            }
        }
        return devices;
    }

    /// <summary>Pids of processes whose command line names a path under <paramref name="prefix"/> (vsinit monitors and
    /// execs name their spec in the guest's run directory).</summary>
    public static IReadOnlyList<int> ProcessesNaming(string prefix) =>
        Processes().Where(p => p.Pid != Environment.ProcessId && p.CommandLine.Contains(prefix, StringComparison.Ordinal)).Select(p => p.Pid).ToList();

    /// <summary>The host's processes with their command lines (NULs as spaces); one that ends while read is left out.</summary>
    public static IEnumerable<(int Pid, string CommandLine)> Processes()
    {
        foreach (var proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out var pid)) continue;
            string cmdline;
            try
            {
                cmdline = File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ');
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            yield return (pid, cmdline);
        }
    }

    /// <summary>
    /// The invariants after any crash, checked from outside the agent: each guest the agent lists is whole (not broken)
    /// and nothing on the host carries this host's names without belonging to a listed guest in the state it is in.
    /// </summary>
    public async Task ShouldHaveNothingOrphanedAsync()
    {
        using var client = Client();
        var guests = (await client.ListAsync()).Guests;
        var why = $"guests: {string.Join(", ", guests.Select(g => $"{g.Name} {g.Kind} {g.State}"))}\nagent log:\n{AgentLog}";
        guests.Where(g => g.State == "broken").Select(g => $"{g.Name}: {g.Problem}").ShouldBeEmpty(why);
        bool Running(GuestInfo g) => g.State is "running" or "paused";
        var names = guests.Select(g => g.Name).ToHashSet();
        foreach (var name in names) Seen(name);
        // Directories: one per listed guest, no leftovers.
        var guestsDir = Path.Combine(Root, "guests");
        Joined((Directory.Exists(guestsDir) ? Directory.EnumerateDirectories(guestsDir).Select(Path.GetFileName).OfType<string>() : []).Order())
            .ShouldBe(Joined(names.Order()), $"guest directories\n{why}");
        var runGuests = Path.Combine(RunDir, "guests");
        (Directory.Exists(runGuests) ? Directory.EnumerateDirectories(runGuests).Select(Path.GetFileName) : [])
            .Where(n => !names.Contains(n!)).ShouldBeEmpty($"run directories of no guest\n{why}");
        // Cgroups: exactly the running vservers'.
        var cgroups = CgroupHierarchies.Select(h => Path.Combine(h, CgroupParent)).Where(Directory.Exists)
            .SelectMany(Directory.EnumerateDirectories).Select(Path.GetFileName).OfType<string>().Distinct().Order().ToList();
        Joined(cgroups).ShouldBe(Joined(guests.Where(g => g.Kind == "vserver" && Running(g)).Select(g => g.Name).Order()), $"cgroups\n{why}");
        // Mounts: a vserver's netns; anything else only under a running guest's directories.
        foreach (var mount in MountsUnder(Dir).Where(m => m != Dir))
        {
            var rel = mount.StartsWith(Path.Combine(RunDir, "guests") + "/", StringComparison.Ordinal) ? mount[(runGuests.Length + 1)..]
                : mount.StartsWith(guestsDir + "/", StringComparison.Ordinal) ? mount[(guestsDir.Length + 1)..] : null;
            rel.ShouldNotBeNull($"mount {mount} outside any guest's directories\n{why}");
            var guest = guests.FirstOrDefault(g => g.Name == rel.Split('/')[0]);
            guest.ShouldNotBeNull($"mount {mount} of no guest\n{why}");
            if (mount == Path.Combine(runGuests, guest.Name, "netns")) guest.Kind.ShouldBe("vserver", $"netns mount of a domain: {mount}\n{why}");
            else Running(guest).ShouldBeTrue($"mount {mount} of stopped guest {guest.Name}\n{why}");
        }
        // Loop devices: a running guest's layer image only.
        foreach (var (device, backing) in LoopDevicesUnder(Root))
        {
            var owner = guests.FirstOrDefault(g => backing.StartsWith(Path.Combine(guestsDir, g.Name) + "/", StringComparison.Ordinal));
            if (owner is not null && Running(owner)) continue;
            (await LoopDeviceHoldersAsync(device, backing)).ShouldBeEmpty($"loop device {device} on {backing} of no running guest; held by\n{why}");
        }
        // Processes: QEMU and virtiofsd of running domains only, vsinit of running vservers only.
        foreach (var g in guests)
        {
            var run = Path.Combine(runGuests, g.Name) + "/";
            if (!Running(g))
            {
                ProcessesNaming(run).ShouldBeEmpty($"processes of stopped guest {g.Name}\n{why}");
                VirtiofsdPids(g.Name).ShouldBeEmpty($"virtiofsd of stopped guest {g.Name}\n{why}");
            }
            else if (g.Kind == "vserver")
            {
                QemuPids(g.Name).ShouldBeEmpty($"QEMU of vserver {g.Name}\n{why}");
                VirtiofsdPids(g.Name).ShouldBeEmpty($"virtiofsd of vserver {g.Name}\n{why}");
            }
            else Joined(QemuPids(g.Name).Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture))).ShouldBe($"{g.InitPid}", $"QEMU of {g.Name}\n{why}");
        }
        Processes().Where(p => p.Pid != Environment.ProcessId && p.CommandLine.Contains(runGuests + "/", StringComparison.Ordinal)
                               && !guests.Any(g => p.CommandLine.Contains(Path.Combine(runGuests, g.Name) + "/", StringComparison.Ordinal)))
            .Select(p => p.Pid).ShouldBeEmpty($"processes of no guest\n{why}");
        // Interfaces on the bridge: the vservers' veths and the domains' taps.
        var expected = guests.Select(g => g.Kind == "vserver" ? HostVeth(g.Name) : Tap(g.Name)).ToHashSet();
        foreach (var link in Directory.EnumerateDirectories("/sys/class/net").Select(Path.GetFileName).OfType<string>())
        {
            var master = new FileInfo($"/sys/class/net/{link}/master").LinkTarget;
            if (master is not null && Path.GetFileName(master) == Bridge) expected.ShouldContain(link, $"interface {link} on the bridge\n{why}");
            foreach (var g in guests)
                if (link == (g.Kind == "vserver" ? Tap(g.Name) : HostVeth(g.Name)))
                    throw new ShouldAssertException($"{link}: an interface of the other kind for {g.Kind} {g.Name}\n{why}");
        }
        // A guest's own interface is on the bridge (a tap or veth that lost it leaves the guest without a network), and
        // names of guests that are gone have none, on the bridge or off it.
        foreach (var g in guests)
        {
            var own = g.Kind == "vserver" ? HostVeth(g.Name) : Tap(g.Name);
            if (Directory.Exists($"/sys/class/net/{own}"))
                Path.GetFileName(new FileInfo($"/sys/class/net/{own}/master").LinkTarget).ShouldBe(Bridge, $"master of {own} ({g.Kind} {g.Name})\n{why}");
        }
        foreach (var gone in _names.Keys.Where(n => !names.Contains(n)))
            foreach (var link in new[] { HostVeth(gone), Tap(gone) })
                Directory.Exists($"/sys/class/net/{link}").ShouldBeFalse($"interface {link} of guest {gone}, which is gone\n{why}");
        // Published ports: the table holds exactly the listed guests' ports.
        var table = Run("nft", "list", "table", "ip", PortsTable);
        var rules = System.Text.RegularExpressions.Regex.Matches(table.Code == 0 ? table.Stdout : "", @"(tcp|udp) dport (\d+) dnat (?:ip )?to ([0-9.]+):(\d+)")
            .Select(m => $"{m.Groups[1].Value} {m.Groups[2].Value} {m.Groups[3].Value}:{m.Groups[4].Value}").ToHashSet();
        Joined(rules.Order()).ShouldBe(Joined(guests.SelectMany(g => (g.Ports ?? []).Select(p => $"{p.Protocol} {p.HostPort} {g.Ipv4}:{p.GuestPort}")).Order()),
            $"published ports' rules\n{why}");
        // The resolver: exactly one dnsmasq of this host's run root, the one the agent supervises.
        var resolvers = Processes().Where(p => p.CommandLine.Contains("dnsmasq", StringComparison.Ordinal)
                                               && p.CommandLine.Contains(Path.Combine(RunDir, "dns") + "/", StringComparison.Ordinal)).ToList();
        var reported = (await client.HostAsync()).Resolver;
        Joined(resolvers.Select(p => p.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)))
            .ShouldBe(reported?.Pid?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "", $"resolvers of this host ({reported?.Problem})\n{why}");
        // Routes of routed addresses: exactly the routed guests'.
        var routes = Run("ip", "-4", "-o", "route", "show", "dev", Bridge, "proto", "static").Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')[0]).Order();
        Joined(routes).ShouldBe(Joined(guests.Where(g => g.Routed).Select(g => g.Ipv4!).Order()), $"routes of routed addresses\n{why}");
        // Id ranges: never shared.
        var ranges = guests.Where(g => g.HostIdBase is not null).OrderBy(g => g.HostIdBase).ToList();
        for (var i = 1; i < ranges.Count; i++)
            (ranges[i].HostIdBase >= ranges[i - 1].HostIdBase + ranges[i - 1].HostIdCount).ShouldBeTrue($"id ranges overlap\n{why}");
    }

    private static string Joined(IEnumerable<string> items) => string.Join(", ", items);

    /// <summary>
    /// What holds a loop device that no running guest owns, after up to 5 s for it to go by itself: a vserver starting
    /// anywhere on the host holds a copy of every host mount (this one's layer among them) from its clone to its
    /// pivot_root, so a layer just unmounted may stay on its device that long. Empty once it is detached; otherwise the
    /// processes whose mount namespace mounts the device or an overlay over the image's directory.
    /// </summary>
    private static async Task<IReadOnlyList<string>> LoopDeviceHoldersAsync(string device, string backing)
    {
        var sys = $"/sys/block/{Path.GetFileName(device)}";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (File.Exists($"{sys}/loop/backing_file") && clock.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(20);
        string majorMinor;
        try
        {
            if (!File.Exists($"{sys}/loop/backing_file")) return [];
            majorMinor = File.ReadAllText($"{sys}/dev").Trim();
        }
        catch (IOException)
        {
            return [];
        }
        var imageDir = Path.GetDirectoryName(backing.Replace(" (deleted)", "", StringComparison.Ordinal))!;
        var holders = new List<string>();
        foreach (var (pid, cmdline) in Processes())
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{pid}/mountinfo").Where(l => l.Split(' ')[2] == majorMinor || l.Contains(imageDir + "/", StringComparison.Ordinal)))
                    holders.Add($"pid {pid} ({cmdline.Trim()}): {line}");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return holders.Count > 0 ? holders.Take(20).ToList() : [$"{device} ({majorMinor}): still attached after 5 s, mounted in no process's namespace"];
    }

    private static void TryWrite(string path, string value)
    {
        try
        {
            File.WriteAllText(path, value);
        }
        catch (IOException)
        {
        }
    }

    private static void TryRmdir(string path)
    {
        for (var i = 0; i < 20; i++)
        {
            try
            {
                Directory.Delete(path);
                return;
            }
            catch (IOException)
            {
                Thread.Sleep(50);
            }
        }
    }
}

public static class CommandResultAssertions
{
    public static CommandResult ShouldSucceed(this CommandResult result)
    {
        result.Code.ShouldBe(0, result.ToString());
        return result;
    }

    /// <summary>A refusal as the standards want it: non-zero exit and exactly one line on stderr naming the problem.</summary>
    public static CommandResult ShouldFailWith(this CommandResult result, string fragment)
    {
        result.Code.ShouldNotBe(0, result.ToString());
        var lines = result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.Length.ShouldBe(1, result.ToString());
        lines[0].ShouldContain(fragment, Case.Insensitive, result.ToString());
        return result;
    }
}
