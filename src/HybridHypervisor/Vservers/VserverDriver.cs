using System.Globalization;
using System.Net;
using HybridHypervisor.Model;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Security;

namespace HybridHypervisor.Vservers;

/// <summary>How a guest's run ended: a vserver's init as its monitor recorded it, or a domain's QEMU together with
/// what the guest asked for (power-off, reset) as QMP reported it.</summary>
/// <param name="Reason">Domains: what ended the run, in words (e.g. "the guest powered off").</param>
/// <param name="Crashed">Domains: QEMU died without the guest or the agent asking it to (killed, or an error).</param>
/// <param name="Reset">Domains: whether the guest rebooted; null for vservers, where a reboot is a SIGHUP to init.</param>
public sealed record GuestExit(int? Code, int? Signal, DateTimeOffset At, string? Reason = null, bool Crashed = false, bool? Reset = null)
{
    public bool Failed => Crashed || Code is not 0;

    /// <summary>reboot(2) inside a pid namespace ends its init with SIGHUP; power-off and halt with SIGINT.</summary>
    public bool RebootRequested => Reset ?? Signal == 1;

    public string Description => Reason ?? (Code is { } c ? $"exited with code {c}" : Signal is { } s ? $"killed by signal {s}{SignalName(s)}" : "ended, status unknown");

    private static string SignalName(int s) => s switch
    {
        1 => " (SIGHUP: reboot requested)", 2 => " (SIGINT: power-off requested)", 9 => " (SIGKILL)", 15 => " (SIGTERM)", _ => "",
    };

    /// <summary>Parses the monitor's exit file: `exited N` or `signaled S`.</summary>
    public static GuestExit? Parse(string text, DateTimeOffset at)
    {
        var parts = text.Trim().Split(' ');
        if (parts.Length != 2 || !int.TryParse(parts[1], CultureInfo.InvariantCulture, out var n)) return null;
        return parts[0] switch
        {
            "exited" => new GuestExit(n, null, at),
            "signaled" => new GuestExit(null, n, at),
            _ => null,
        };
    }
}

/// <summary>A running vserver as the agent holds it: its monitor, its init and its cgroup.</summary>
public sealed class RunningVserver(ProcessHandle monitor, ProcessHandle? init, int initPid, ICgroup cgroup, DateTimeOffset startedAt) : IDisposable
{
    public ProcessHandle Monitor { get; } = monitor;
    public ProcessHandle? Init { get; } = init;
    public int InitPid { get; } = initPid;
    public ICgroup Cgroup { get; } = cgroup;
    public DateTimeOffset StartedAt { get; } = startedAt;

    public void Dispose()
    {
        Monitor.Dispose();
        Init?.Dispose();
    }
}

/// <summary>The vserver half of a guest's lifecycle: storage, network, cgroup and the vsinit-run init.
/// Knows nothing of HTTP or of the fleet's bookkeeping.</summary>
public sealed class VserverDriver(FleetOptions options, ICgroupHierarchy cgroups, HostBridge bridge, Vserver.Isolation.Images.ImageStore images)
{
    public void Provision(GuestConfig config, GuestPaths paths)
    {
        WritableLayer.Provision(config, paths);
        Directory.CreateDirectory(paths.Rootfs);
        Directory.CreateDirectory(paths.RunDir);
        Failpoints.Hit("create.after-storage");
        EnsureNetwork(config, paths);
    }

    /// <summary>The network lives in /run: after a host reboot it is rebuilt on the next start.</summary>
    public void EnsureNetwork(GuestConfig config, GuestPaths paths)
    {
        if (GuestNetwork.Exists(paths.Netns, paths.HostVeth)) return;
        GuestNetwork.Destroy(paths.Netns, paths.HostVeth);
        Directory.CreateDirectory(paths.RunDir);
        bridge.Ensure();
        GuestNetwork.Create(options.VsinitPath, paths.Netns, paths.HostVeth, bridge, IPAddress.Parse(config.Network.Ipv4!), config.Network.Mac);
    }

    public RunningVserver Start(GuestConfig config, GuestPaths paths)
    {
        var image = images.Find(config.Image)
            ?? throw FleetException.Conflict($"image '{config.Image}' of guest '{config.Name}' is gone; build it again with: vsctl image build {config.Image}");
        EnsureNetwork(config, paths);
        Failpoints.Hit("start.after-network");
        File.Delete(paths.PidFile);
        File.Delete(paths.ExitFile);
        File.Delete(paths.StoppingMarker);
        // Left behind only by a monitor that was killed.
        File.Delete(paths.NotifySocket);
        var (upper, work) = WritableLayer.Attach(config, paths);
        Failpoints.Hit("start.after-layer");
        ICgroup cgroup;
        try
        {
            cgroup = cgroups.Create(paths.CgroupPath);
        }
        catch
        {
            WritableLayer.Detach(paths);
            throw;
        }
        try
        {
            Failpoints.Hit("start.after-cgroup");
            cgroup.Apply(ToCgroupLimits(config.Limits));
            WriteSeccompFilter(config, paths);
            WriteInitialMeminfo(config, paths);
            var spec = new VsinitSpec
            {
                Name = config.Name,
                Hostname = config.Name,
                Rootfs = paths.Rootfs,
                Lower = image.RootfsPath,
                Upper = upper,
                Work = work,
                Netns = paths.Netns,
                Cgroups = cgroup.ProcsFiles,
                CapKeep = CapabilitiesFor(config),
                NoNewPrivs = !config.Security.Privileged,
                IdMap = config.Security.IdMap is { } map ? (map.HostBase, map.Count) : null,
                SeccompFilter = paths.SeccompFilter,
                Meminfo = paths.Meminfo,
                NotifySocket = paths.NotifySocket,
                PidFile = paths.PidFile,
                ExitFile = paths.ExitFile,
                Console = paths.Console,
                Args = config.InitCommand,
            };
            // Runtime state under the run root, rewritten at every start: no fsync needed.
            File.WriteAllText(paths.Spec, spec.Render());
            Failpoints.Hit("start.after-spec");
            var started = Vsinit.Start(options.VsinitPath, paths.Spec);
            Failpoints.Hit("start.after-exec");
            return new RunningVserver(started.Monitor, ProcessHandle.TryOpen(started.InitPid), started.InitPid, cgroup, DateTimeOffset.UtcNow);
        }
        catch (GuestStartException e)
        {
            cgroup.Destroy();
            WritableLayer.Detach(paths);
            throw new FleetException(FleetError.Failed, $"starting {config.Name} failed: {e.Message}");
        }
        catch
        {
            cgroup.Destroy();
            WritableLayer.Detach(paths);
            throw;
        }
    }

    /// <summary>Finds a vserver left running by an earlier agent: its monitor must still be the vsinit that wrote the pid file.</summary>
    public RunningVserver? Adopt(GuestPaths paths)
    {
        if (!File.Exists(paths.PidFile) || File.Exists(paths.ExitFile)) return null;
        var parts = File.ReadAllText(paths.PidFile).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length != 2 || !int.TryParse(parts[0], out var initPid) || !int.TryParse(parts[1], out var monitorPid)) return null;
        var monitor = ProcessHandle.TryOpen(monitorPid);
        if (monitor is null) return null;
        string cmdline;
        try
        {
            cmdline = File.ReadAllText($"/proc/{monitorPid}/cmdline").Replace('\0', ' ');
        }
        catch (IOException)
        {
            monitor.Dispose();
            return null;
        }
        if (!cmdline.Contains("vsinit", StringComparison.Ordinal) || !cmdline.Contains(paths.Spec, StringComparison.Ordinal))
        {
            monitor.Dispose();
            return null;
        }
        var cgroup = cgroups.Open(paths.CgroupPath) ?? cgroups.Create(paths.CgroupPath);
        var started = File.GetLastWriteTimeUtc(paths.PidFile);
        return new RunningVserver(monitor, ProcessHandle.TryOpen(initPid), initPid, cgroup, new DateTimeOffset(started, TimeSpan.Zero));
    }

    /// <summary>Reads and clears what the monitor left after init ended, and frees the cgroup.</summary>
    public GuestExit CollectExit(GuestPaths paths)
    {
        var exit = ReadExit(paths);
        ReleaseCgroup(paths);
        return exit;
    }

    /// <summary>Frees the cgroup of a guest whose init has ended (the kernel already killed the rest of its pid namespace).</summary>
    public void ReleaseCgroup(GuestPaths paths) => cgroups.Open(paths.CgroupPath)?.Destroy();

    /// <summary>Reads and clears what the monitor left after init ended.</summary>
    public GuestExit ReadExit(GuestPaths paths)
    {
        GuestExit? exit = null;
        if (File.Exists(paths.ExitFile))
            exit = GuestExit.Parse(File.ReadAllText(paths.ExitFile), new DateTimeOffset(File.GetLastWriteTimeUtc(paths.ExitFile), TimeSpan.Zero));
        File.Delete(paths.ExitFile);
        File.Delete(paths.PidFile);
        return exit ?? new GuestExit(null, null, DateTimeOffset.UtcNow);
    }

    public void Apply(RunningVserver running, GuestLimits limits) => running.Cgroup.Apply(ToCgroupLimits(limits));

    public ExecProcess Exec(GuestConfig config, GuestPaths paths, RunningVserver running, IReadOnlyList<string> command, bool tty,
        int rows, int cols, IReadOnlyDictionary<string, string>? env, string? cwd)
    {
        var environment = VsinitSpec.DefaultEnv.Where(e => !(tty && e.StartsWith("TERM=", StringComparison.Ordinal))).ToList();
        if (tty) environment.Add("TERM=" + (env?.GetValueOrDefault("TERM") ?? "xterm"));
        if (env is not null)
            foreach (var (k, v) in env)
                if (k != "TERM") environment.Add($"{k}={v}");
        var spec = new VsinitSpec
        {
            Name = config.Name,
            TargetPid = running.InitPid,
            Cgroups = running.Cgroup.ProcsFiles,
            CapKeep = CapabilitiesFor(config),
            NoNewPrivs = !config.Security.Privileged,
            SeccompFilter = paths.SeccompFilter,
            NotifySocket = paths.NotifySocket,
            Env = environment,
            Args = command,
            Cwd = cwd ?? "/",
            Tty = tty,
        };
        var specPath = Path.Combine(paths.RunDir, $"exec-{Guid.NewGuid():N}.spec");
        Vserver.Isolation.Storage.AtomicFile.WriteAllText(specPath, spec.Render());
        PtyPair? pty = null;
        try
        {
            // The guest's root and its tty group (5), as host ids.
            if (tty) pty = PtyPair.OpenInGuest(running.InitPid, rows, cols,
                config.Security.IdMap is { } map ? ((uint)map.HostBase, (uint)(map.HostBase + 5)) : null);
            var exec = Vsinit.Exec(options.VsinitPath, specPath, pty);
            exec.Process.Exited.ContinueWith(_ => File.Delete(specPath), TaskScheduler.Default);
            return exec;
        }
        catch
        {
            pty?.Dispose();
            File.Delete(specPath);
            throw;
        }
    }

    /// <summary>Removes everything a vserver owns on the host; safe on a half-created or already half-removed one.</summary>
    public void Teardown(GuestPaths paths)
    {
        cgroups.Open(paths.CgroupPath)?.Destroy();
        Failpoints.Hit("teardown.after-cgroup");
        GuestNetwork.Destroy(paths.Netns, paths.HostVeth);
        Failpoints.Hit("teardown.after-network");
        if (Directory.Exists(paths.RunDir)) Directory.Delete(paths.RunDir, recursive: true);
        // Before the directory goes: deleting through the mount would empty the image first, then fail on the mount point.
        WritableLayer.Detach(paths);
        Failpoints.Hit("teardown.after-layer");
        // Renamed first: a crash mid-delete must not leave a directory that looks like a guest.
        if (Directory.Exists(paths.Dir)) Vserver.Isolation.Storage.AtomicFile.DeleteDirectory(paths.Dir, "destroying");
    }

    public static CgroupLimits ToCgroupLimits(GuestLimits limits) => new(limits.MemoryBytes, limits.Cpus, limits.Pids, limits.MemoryMinBytes);

    /// <summary>Root of a user-namespaced guest keeps every capability (they reach only what its namespaces own, so a
    /// system image's init and package manager work); a privileged guest's root is the host's, so it gets less.</summary>
    private static IReadOnlyList<int> CapabilitiesFor(GuestConfig config) =>
        config.Security.Privileged ? Capabilities.KeptFor(allowSysAdmin: false) : Capabilities.All;

    /// <summary>Compiled at every start, so a changed profile or override list applies on the next start; exec loads
    /// the same file, so commands run in the guest are held to the same filter as its init. sysinfo(2) goes to the
    /// monitor, which answers from <see cref="GuestPaths.Meminfo"/>.</summary>
    private static void WriteSeccompFilter(GuestConfig config, GuestPaths paths)
    {
        var profile = SeccompProfile.Default(config.Security.Privileged, config.Security.AllowSyscalls.ToList(), sysinfoToMonitor: true);
        Vserver.Isolation.Storage.AtomicFile.WriteAllBytes(paths.SeccompFilter, profile.Compile());
    }

    /// <summary>vsinit binds the file as it is at start; until the agent's sampler rewrites it in place (within a
    /// second), the guest sees its limit, all of it free. Readable by all: inside, any user may read /proc/meminfo.</summary>
    private static void WriteInitialMeminfo(GuestConfig config, GuestPaths paths)
    {
        var host = new SharedMemoryAccounting.ProcFs().ReadMemInfo();
        File.WriteAllText(paths.Meminfo, SharedMemoryAccounting.GuestMeminfo.Render(host, new SharedMemoryAccounting.CgroupMemory(), config.Limits.MemoryBytes));
        File.SetUnixFileMode(paths.Meminfo, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
    }

}
