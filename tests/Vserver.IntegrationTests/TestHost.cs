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
        using var client = new VserverClient(Socket);
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

    public VserverClient Client() => new(Socket);

    public CommandResult Vsctl(params string[] args) => VsctlWith(null, args);

    public CommandResult VsctlWith(string? stdin, params string[] args)
    {
        var env = new Dictionary<string, string>(Env) { ["VSCTL_NO_AUTOSTART"] = "1" };
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
        if (!p.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            p.Kill(true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in 90 s");
        }
        return new CommandResult(p.ExitCode, stdout.Result, stderr.Result);
    }

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
        var pids = new List<int>();
        foreach (var proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out var pid)) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains("qemu-system", StringComparison.Ordinal) && cmdline.Contains(needle, StringComparison.Ordinal)) pids.Add(pid);
            }
            catch (IOException)
            {
            }
        }
        return pids;
    }

    /// <summary>Pids of virtiofsd processes serving this host's guests (their command line or, inside a user namespace,
    /// their environment names the guest's run directory).</summary>
    public IReadOnlyList<int> VirtiofsdPids(string? guest = null)
    {
        var needle = guest is null ? Dir + "/" : Path.Combine(RunDir, "guests", guest) + "/";
        var pids = new List<int>();
        foreach (var proc in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out var pid)) continue;
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(proc, "cmdline")).Replace('\0', ' ');
                if (!cmdline.Contains("virtiofsd", StringComparison.Ordinal)) continue;
                var environ = File.ReadAllText(Path.Combine(proc, "environ")).Replace('\0', ' ') + " ";
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

    public bool CgroupExists(string guest) =>
        Directory.EnumerateDirectories("/sys/fs/cgroup").Any(h => Directory.Exists(Path.Combine(h, CgroupParent, guest)));

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
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
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
        foreach (var pid in QemuPids().Concat(VirtiofsdPids())) Run("kill", "-9", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Thread.Sleep(100);
        foreach (var line in File.ReadAllLines("/proc/self/mountinfo"))
        {
            var mountPoint = line.Split(' ')[4];
            if (mountPoint.StartsWith(Dir, StringComparison.Ordinal)) Run("umount", "-l", mountPoint);
        }
        if (Directory.Exists(Path.Combine(Root, "guests")))
            foreach (var g in Directory.EnumerateDirectories(Path.Combine(Root, "guests")))
            {
                Run("ip", "link", "del", HostVeth(Path.GetFileName(g)));
                Run("ip", "link", "del", Tap(Path.GetFileName(g)));
            }
        Run("ip", "link", "del", Bridge);
        // The published ports' table of this host's agent (named after its bridge); nobody else's.
        Run("nft", "delete", "table", "ip", PortsTable);
        foreach (var hierarchy in Directory.EnumerateDirectories("/sys/fs/cgroup"))
        {
            var parent = Path.Combine(hierarchy, CgroupParent);
            if (!Directory.Exists(parent)) continue;
            foreach (var cg in Directory.EnumerateDirectories(parent)) TryRmdir(cg);
            TryRmdir(parent);
        }
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
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
