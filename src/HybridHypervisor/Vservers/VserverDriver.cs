using System.Net;
using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Security;

namespace HybridHypervisor.Vservers;

/// <summary>The vserver half of a guest's lifecycle: storage, network, cgroup and the vsinit-run init.
/// Knows nothing of HTTP or of the fleet's bookkeeping.</summary>
/// <param name="resolvFor">What a guest's /etc/resolv.conf says at each start (null: the guest keeps its own); the fleet's
/// decision, asked again at every start.</param>
public sealed class VserverDriver(FleetOptions options, ICgroupHierarchy cgroups, HostBridge bridge, Vserver.Isolation.Images.ImageStore images,
    Func<GuestConfig, ResolvConf?> resolvFor, Action<string> log) : IGuestDriver
{
    public GuestKind Kind => GuestKind.Vserver;

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

    public Task<IGuestRun> StartAsync(GuestConfig config, GuestPaths paths, CancellationToken ct) =>
        Task.FromResult<IGuestRun>(Start(config, paths));

    private RunningVserver Start(GuestConfig config, GuestPaths paths)
    {
        var image = images.Find(config.Image)
            ?? throw FleetException.ImageMissing(config.Image, config.Name);
        // Everything handed to vsinit below is mounted or opened as root: each must be what the agent made.
        paths.RequireLayout(config.Name);
        RequireImageRoot(config, image);
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
            // systemd as init: its own cgroup tree (delegated, the limits staying above it), /run and /run/lock on tmpfs.
            var systemd = GuestInit.IsSystemd([upper, image.RootfsPath], config.InitCommand[0]);
            var delegation = systemd
                ? CgroupDelegation.Prepare(cgroups, paths.CgroupPath, config.Security.IdMap is { } owner ? (uint)owner.HostBase : 0)
                : null;
            var spec = new VsinitSpec
            {
                CgroupMounts = delegation?.Mounts ?? [],
                Tmpfs = systemd ? SystemdTmpfs(config) : [],
                Name = config.Name,
                Hostname = config.Name,
                Rootfs = paths.Rootfs,
                Lower = image.RootfsPath,
                Upper = upper,
                Work = work,
                Netns = paths.Netns,
                Cgroups = [.. cgroup.ProcsFiles, .. delegation?.ProcsFiles ?? []],
                CapKeep = CapabilitiesFor(config),
                NoNewPrivs = !config.Security.Privileged,
                IdMap = config.Security.IdMap is { } map ? (map.HostBase, map.Count) : null,
                SeccompFilter = paths.SeccompFilter,
                Meminfo = paths.Meminfo,
                NotifySocket = paths.NotifySocket,
                PidFile = paths.PidFile,
                ExitFile = paths.ExitFile,
                Console = paths.Console,
                Resolv = resolvFor(config),
                Args = config.InitCommand,
            };
            // Runtime state under the run root, rewritten at every start; written as every state file is, through no link.
            Vserver.Isolation.Storage.AtomicFile.WriteAllText(paths.Spec, spec.Render(), beneath: paths.RunGuestsRoot);
            Failpoints.Hit("start.after-spec");
            var started = Vsinit.Start(options.VsinitPath, paths.Spec);
            Failpoints.Hit("start.after-exec");
            return new RunningVserver(started.Monitor, ProcessHandle.TryOpen(started.InitPid), started.InitPid, cgroup, DateTimeOffset.UtcNow);
        }
        catch (GuestStartException e)
        {
            cgroup.Destroy();
            CgroupDelegation.Release(cgroups, paths.CgroupPath);
            WritableLayer.Detach(paths);
            throw new FleetException(FleetError.Failed, $"starting {config.Name} failed: {e.Message}");
        }
        catch
        {
            cgroup.Destroy();
            CgroupDelegation.Release(cgroups, paths.CgroupPath);
            WritableLayer.Detach(paths);
            throw;
        }
    }

    /// <summary>What /proc/PID/cgroup says of a guest's init, or null when it is gone.</summary>
    private static string? InitCgroups(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/cgroup");
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>A vserver left running by an earlier agent, frozen or not, with its layer mounted on the host again and
    /// its recorded limits in its cgroup (a `set` the agent died in may have changed the cgroup without recording it).</summary>
    public Task<IGuestRun?> AdoptAsync(GuestConfig config, GuestPaths paths)
    {
        var running = Adopt(paths);
        if (running is null) return Task.FromResult<IGuestRun?>(null);
        running.Paused = running.Cgroup.ReadStats().Frozen;
        WritableLayer.Reattach(config, paths, log);
        try
        {
            Apply(running, config.Limits);
        }
        catch (CgroupException e)
        {
            log($"guest {config.Name}: applying its recorded limits again failed: {e.Message}");
        }
        return Task.FromResult<IGuestRun?>(running);
    }

    public GuestExit? CollectUnwatchedEnd(GuestConfig config, GuestPaths paths)
    {
        // A disk quota's image mounted by an earlier agent (which died before the run's end) goes.
        WritableLayer.Release(paths, log);
        return RunFileThere(paths, paths.PidFile) || RunFileThere(paths, paths.ExitFile) ? CollectExit(paths) : null;
    }

    /// <summary>The lower layer is a directory of the image store, reached through no link.</summary>
    private void RequireImageRoot(GuestConfig config, Vserver.Isolation.Images.ImageRecord image)
    {
        try
        {
            Vserver.Isolation.Storage.StateFile.RequireDirectory(images.ImagesRoot, image.RootfsPath);
        }
        catch (Vserver.Isolation.Storage.StateFileException e)
        {
            throw FleetException.Conflict($"image '{config.Image}' of '{config.Name}' cannot be used: {e.Message}");
        }
    }

    /// <summary>Whether anything is at a run file's place; a link on the way there counts as nothing, so nothing is read
    /// or removed through it.</summary>
    private static bool RunFileThere(GuestPaths paths, string path)
    {
        try
        {
            return Vserver.Isolation.Storage.StateFile.Inspect(paths.RunGuestsRoot, path) != Vserver.Isolation.Storage.StateEntry.Missing;
        }
        catch (Vserver.Isolation.Storage.StateFileException)
        {
            return false;
        }
    }

    /// <summary>A pid or exit file's text; null when it is missing or not a regular file (it is then only removed).</summary>
    private static string? ReadRunFile(GuestPaths paths, string path)
    {
        try
        {
            return Vserver.Isolation.Storage.StateFile.TryReadAllText(paths.RunGuestsRoot, path);
        }
        catch (Vserver.Isolation.Storage.StateFileException)
        {
            return null;
        }
    }

    /// <summary>Finds a vserver left running by an earlier agent: its monitor must still be the vsinit that wrote the pid file.</summary>
    private RunningVserver? Adopt(GuestPaths paths)
    {
        if (RunFileThere(paths, paths.ExitFile) || ReadRunFile(paths, paths.PidFile) is not { } pidText) return null;
        var parts = pidText.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
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
    private GuestExit CollectExit(GuestPaths paths)
    {
        var exit = ReadExit(paths);
        ReleaseCgroup(paths);
        return exit;
    }

    /// <summary>Frees the cgroup of a guest whose init has ended (the kernel already killed the rest of its pid namespace).</summary>
    public void ReleaseCgroup(GuestPaths paths)
    {
        cgroups.Open(paths.CgroupPath)?.Destroy();
        CgroupDelegation.Release(cgroups, paths.CgroupPath);
    }

    /// <summary>Reads and clears what the monitor left after init ended.</summary>
    private static GuestExit ReadExit(GuestPaths paths)
    {
        GuestExit? exit = null;
        if (ReadRunFile(paths, paths.ExitFile) is { } text)
            exit = GuestExit.Parse(text, new DateTimeOffset(File.GetLastWriteTimeUtc(paths.ExitFile), TimeSpan.Zero));
        File.Delete(paths.ExitFile);
        File.Delete(paths.PidFile);
        return exit ?? new GuestExit(null, null, DateTimeOffset.UtcNow);
    }

    public void Apply(RunningVserver running, GuestLimits limits) => running.Cgroup.Apply(ToCgroupLimits(limits));

    public Task ApplyLimitsAsync(GuestConfig config, GuestPaths paths, IGuestRun run)
    {
        Apply((RunningVserver)run, config.Limits);
        return Task.CompletedTask;
    }

    /// <summary>The cgroup's reading; null once the guest has ended (its cgroup is gone).</summary>
    public Vserver.Api.GuestUsage? ReadUsage(IGuestRun run)
    {
        try
        {
            return UsageOf(((RunningVserver)run).Cgroup.ReadStats());
        }
        catch (CgroupException)
        {
            return null;
        }
    }

    /// <summary>A cgroup reading in the fleet's terms.</summary>
    public static Vserver.Api.GuestUsage UsageOf(CgroupStats stats) => new()
    {
        MemoryBytes = stats.MemoryBytes, MemoryPeakBytes = stats.MemoryPeakBytes, Processes = stats.Pids,
        CpuSeconds = stats.CpuUsage.TotalSeconds, OomKills = stats.OomKills,
    };

    public Task SetPausedAsync(IGuestRun run, bool paused, CancellationToken ct)
    {
        var running = (RunningVserver)run;
        if (paused) running.Cgroup.Freeze();
        else running.Cgroup.Thaw();
        running.Paused = paused;
        return Task.CompletedTask;
    }

    /// <summary>How long init must have been the only process left before a stop ends it.</summary>
    private static readonly TimeSpan InitAloneQuiet = TimeSpan.FromMilliseconds(150);

    /// <summary>SIGTERM to init; once every service has exited (init alone) or the timeout has passed, SIGKILL (or the
    /// cgroup's end, if init cannot be signalled); returns once the monitor has seen init end (at most 10 s after that).</summary>
    public async Task StopAsync(IGuestRun run, TimeSpan timeout)
    {
        var running = (RunningVserver)run;
        // Frozen tasks cannot act on any signal, not even SIGKILL, until thawed.
        if (running.Paused) running.Cgroup.Thaw();
        var ended = running.Monitor.Exited;
        // systemd halts on SIGRTMIN+3 and ends by itself once its services stopped in order (its own shutdown, which a
        // SIGKILL once it is alone would cut short); other inits get SIGTERM.
        var systemd = GuestInit.RunsSystemd(running.InitPid);
        if (timeout > TimeSpan.Zero && running.Init?.Signal(systemd ? GuestInit.SystemdHalt : 15) == true)
        {
            if (systemd) running.ServicesDoneAtStop = await Task.WhenAny(ended, Task.Delay(timeout)) == ended;
            else running.ServicesDoneAtStop = await InitLeftAloneAsync(running, ended, timeout);
        }
        Failpoints.Hit("stop.after-term");
        if (!ended.IsCompleted)
        {
            if (running.Init is null || !running.Init.Signal(9)) running.Cgroup.Destroy();
            await Task.WhenAny(ended, Task.Delay(TimeSpan.FromSeconds(10)));
        }
    }

    /// <summary>
    /// Waits, after the stop signal, until init ends by itself (false) or until it has been the only process in the
    /// vserver for <see cref="InitAloneQuiet"/> (true): every service has exited, with all the time the stop allows, and
    /// what an init does after that is wait to kill processes that are gone (busybox: 1 s after SIGTERM to all, 1 s after
    /// SIGKILL), which the caller saves with a SIGKILL of its own. Also false when the timeout passes first.
    /// </summary>
    private static async Task<bool> InitLeftAloneAsync(RunningVserver running, Task ended, TimeSpan timeout)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        TimeSpan? aloneSince = null;
        while (clock.Elapsed < timeout)
        {
            if (await Task.WhenAny(ended, Task.Delay(20)) == ended) return false;
            IReadOnlyList<int> pids;
            try
            {
                pids = running.Cgroup.Pids();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }
            var alone = pids.All(p => p == running.InitPid || p == running.Monitor.Pid);
            if (!alone) aloneSince = null;
            else if (aloneSince is null) aloneSince = clock.Elapsed;
            else if (clock.Elapsed - aloneSince >= InitAloneQuiet) return true;
        }
        return false;
    }

    /// <summary>The exit the monitor recorded; the cgroup (the kernel already killed the rest of the pid namespace) and a
    /// quota's layer mount are released.</summary>
    public Task<GuestExit> EndRunAsync(GuestConfig config, GuestPaths paths, IGuestRun run)
    {
        var running = (RunningVserver)run;
        var exit = ReadExit(paths);
        if (running.ServicesDoneAtStop && exit.Signal == 9)
            exit = exit with { Reason = "stopped: its services had exited, then the agent ended its init (all that was left)" };
        running.Dispose();
        ReleaseCgroup(paths);
        WritableLayer.Release(paths, log);
        return Task.FromResult(exit);
    }

    public Task<IGuestProcess> ExecAsync(GuestConfig config, GuestPaths paths, IGuestRun run, GuestCommand command, CancellationToken ct) =>
        Task.FromResult<IGuestProcess>(new VserverProcess(Exec(config, paths, (RunningVserver)run, command.Argv, command.Tty, command.Rows,
            command.Cols, command.Env, command.Cwd)));

    private ExecProcess Exec(GuestConfig config, GuestPaths paths, RunningVserver running, IReadOnlyList<string> command, bool tty,
        int rows, int cols, IReadOnlyDictionary<string, string>? env, string? cwd)
    {
        // What login(1) gives root beside the defaults: who it is.
        var environment = VsinitSpec.DefaultEnv.Where(e => !(tty && e.StartsWith("TERM=", StringComparison.Ordinal)))
            .Concat(["USER=root", "LOGNAME=root"]).ToList();
        if (tty) environment.Add("TERM=" + (env?.GetValueOrDefault("TERM") ?? "xterm"));
        if (env is not null)
            foreach (var (k, v) in env)
                if (k != "TERM") environment.Add($"{k}={v}");
        var spec = new VsinitSpec
        {
            Name = config.Name,
            TargetPid = running.InitPid,
            Cgroups = CgroupDelegation.CommandProcsFiles(cgroups, running.Cgroup, paths.CgroupPath, InitCgroups(running.InitPid)),
            CapKeep = CapabilitiesFor(config),
            NoNewPrivs = !config.Security.Privileged,
            SeccompFilter = paths.SeccompFilter,
            NotifySocket = paths.NotifySocket,
            Env = environment,
            Args = command,
            Cwd = cwd ?? "/",
            Tty = tty,
            HangupGrace = IGuestProcess.HangupGrace,
        };
        var specPath = Path.Combine(paths.RunDir, $"exec-{Guid.NewGuid():N}.spec");
        Vserver.Isolation.Storage.AtomicFile.WriteAllText(specPath, spec.Render(), beneath: paths.RunGuestsRoot);
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

    /// <summary>Removes everything a vserver owns on the host (the guest's directories go after every driver's
    /// teardown); safe on a half-created or already half-removed one.</summary>
    public GuestClaims ReadHeld(string name, GuestPaths paths)
    {
        // The writable layer's root is owned by the guest's root: the first id of its range, in a slot of the host's.
        IdMap? ids = null;
        if (Directory.Exists(paths.Upper) && Vserver.Isolation.Storage.FileOwner.Of(paths.Upper) is { } uid
            && uid >= options.IdRange.Start && uid < options.IdRange.Start + options.IdRange.Count)
            ids = new IdMap(uid - (uid - options.IdRange.Start) % HostIdRange.SlotSize, HostIdRange.SlotSize);
        return new GuestClaims(name, Ids: ids) { NetnsAddress = GuestNetwork.ReadAddress(paths.Netns) };
    }

    public void Teardown(GuestPaths paths)
    {
        cgroups.Open(paths.CgroupPath)?.Destroy();
        Failpoints.Hit("teardown.after-cgroup");
        GuestNetwork.Destroy(paths.Netns, paths.HostVeth);
        Failpoints.Hit("teardown.after-network");
        // Before the directory goes: deleting through the mount would empty the image first, then fail on the mount point.
        WritableLayer.Detach(paths);
        Failpoints.Hit("teardown.after-layer");
    }

    public static CgroupLimits ToCgroupLimits(GuestLimits limits) => new(limits.MemoryBytes, limits.Cpus, limits.Pids, limits.MemoryMinBytes);

    /// <summary>Root of a user-namespaced guest keeps every capability (they reach only what its namespaces own, so a
    /// system image's init and package manager work); a privileged guest's root is the host's, so it gets less.</summary>
    /// <summary>What systemd expects to find mounted in a container: /run and /run/lock as tmpfs (a tenth of the guest's
    /// memory limit for /run, as systemd sizes it on a host, and 5M for the lock files).</summary>
    private static IReadOnlyList<(string Dir, string Options)> SystemdTmpfs(GuestConfig config)
    {
        var run = config.Limits.MemoryBytes is { } limit ? Math.Max(limit / 10, 16L << 20) : 64L << 20;
        return [("/run", $"mode=755,size={run}"), ("/run/lock", "mode=1777,size=5242880")];
    }

    private static IReadOnlyList<int> CapabilitiesFor(GuestConfig config) =>
        config.Security.Privileged ? Capabilities.KeptFor(allowSysAdmin: false) : Capabilities.InUserNamespace;

    /// <summary>Compiled at every start, so a changed profile or override list applies on the next start; exec loads
    /// the same file, so commands run in the guest are held to the same filter as its init. sysinfo(2) goes to the
    /// monitor, which answers from <see cref="GuestPaths.Meminfo"/>.</summary>
    private static void WriteSeccompFilter(GuestConfig config, GuestPaths paths)
    {
        var profile = SeccompProfile.Default(config.Security.Privileged, config.Security.AllowSyscalls.ToList(), sysinfoToMonitor: true);
        Vserver.Isolation.Storage.AtomicFile.WriteAllBytes(paths.SeccompFilter, profile.Compile(), beneath: paths.RunGuestsRoot);
    }

    /// <summary>vsinit binds the file as it is at start; until the agent's sampler rewrites it in place (within a
    /// second), the guest sees its limit, all of it free. Readable by all: inside, any user may read /proc/meminfo.</summary>
    private static void WriteInitialMeminfo(GuestConfig config, GuestPaths paths)
    {
        var host = new SharedMemoryAccounting.ProcFs().ReadMemInfo();
        // A new inode, made through no link; later rewrites go into this one in place (vsinit binds it).
        Vserver.Isolation.Storage.AtomicFile.WriteAllText(paths.Meminfo,
            SharedMemoryAccounting.GuestMeminfo.Render(host, new SharedMemoryAccounting.CgroupMemory(), config.Limits.MemoryBytes), beneath: paths.RunGuestsRoot);
        File.SetUnixFileMode(paths.Meminfo, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
    }

}
