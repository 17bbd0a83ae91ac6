using HybridHypervisor.Domains.GuestAgent;
using HybridHypervisor.Domains.Qmp;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Images;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace HybridHypervisor.Domains;

/// <summary>
/// The domain half of a guest's lifecycle: its disk (a qcow2 overlay over the image's ext4 base), its tap on the
/// bridge, and its QEMU, started as a child of the agent in a session of its own (so it outlives an agent restart and
/// is adopted by the next agent through its pid file and QMP socket). Knows nothing of HTTP or of the fleet's
/// bookkeeping.
/// </summary>
/// <param name="resolvFor">What a guest's /etc/resolv.conf says at each boot (null: the guest keeps its own); the
/// fleet's decision, passed to the initramfs on the kernel command line.</param>
public sealed class DomainDriver(FleetOptions options, HostBridge bridge, ImageStore images, KernelStore kernels,
    Func<GuestConfig, ResolvConf?> resolvFor, Action<string> log)
    : IGuestDriver
{
    public const string QemuProgram = "qemu-system-x86_64";
    private static readonly TimeSpan QmpTimeout = TimeSpan.FromSeconds(15);
    /// <summary>How long an exec waits for a freshly started domain's guest agent (a TCG boot takes a few seconds).</summary>
    private static readonly TimeSpan GuestAgentReadyTimeout = TimeSpan.FromSeconds(60);
    private readonly Lock _acceleratorLock = new();
    private Task<AcceleratorChoice>? _accelerator;

    public GuestKind Kind => GuestKind.Domain;

    /// <summary>What domains run on: probed once per host boot by booting the domain kernel under KVM (see
    /// <see cref="AcceleratorProbe"/>); null while no kernel is built to probe with.</summary>
    public Task<AcceleratorChoice>? AcceleratorAsync()
    {
        lock (_acceleratorLock)
        {
            if (_accelerator is { IsFaulted: false, IsCanceled: false }) return _accelerator;
            var kernel = kernels.Find(DomainSettings.DefaultKernel) ?? (kernels.List() is [var first, ..] ? first : null);
            if (kernel is null) return null;
            var qemu = FindProgram(QemuProgram) ?? QemuProgram;
            _accelerator = Task.Run(async () =>
            {
                var choice = await AcceleratorProbe.ChooseAsync(qemu, kernel.Vmlinux, kernel.Initrd,
                    Path.Combine(options.RunRoot, "accelerator.json"), AcceleratorProbe.DefaultTimeout);
                log(choice.Kind == AcceleratorKind.Kvm ? "domains run under KVM" : $"WARNING: domains run emulated: {choice.Display}");
                return choice;
            });
            return _accelerator;
        }
    }

    /// <summary>What the probe found, if it has finished: a view only reads it (starting the probe is start-up's and
    /// start's job).</summary>
    public AcceleratorChoice? ProbedAccelerator()
    {
        lock (_acceleratorLock) return _accelerator is { IsCompletedSuccessfully: true } probe ? probe.Result : null;
    }

    /// <summary>The accelerator a domain starts with, or a refusal saying which kernel to build.</summary>
    public async Task<AcceleratorChoice> RequireAcceleratorAsync(string kernel) =>
        await (AcceleratorAsync() ?? throw kernels.MissingError(kernel));

    /// <summary>Promoted vservers' roots: the shared tree and its virtiofsd, the copies.</summary>
    public PromotionRoot Roots { get; } = new(options, images);

    // ---- create / destroy ----

    /// <summary>The image's ext4 base (built once per image), this domain's overlay of the requested size, its tap.</summary>
    public void Provision(GuestConfig config, GuestPaths paths)
    {
        var domain = config.Domain!;
        var image = images.Find(config.Image) ?? throw FleetException.Invalid($"unknown image '{config.Image}'");
        Directory.CreateDirectory(paths.Dir);
        Directory.CreateDirectory(paths.RunDir);
        try
        {
            var (basePath, baseBytes) = BaseDisk.EnsureBase(Path.GetDirectoryName(image.RootfsPath)!, image.RootfsPath);
            if (DomainDisk.CheckSize(domain.DiskBytes, baseBytes, config.Image) is { } tooSmall)
                throw FleetException.Invalid(new SettingError(Vserver.Api.GuestSpec.Fields.DiskBytes,
                        domain.DiskBytes.ToString(System.Globalization.CultureInfo.InvariantCulture), Vserver.Api.ErrorCodes.Reasons.TooSmallForImage, tooSmall)
                    .With("minimum", DomainDisk.MinimumBytes(baseBytes)));
            DomainDisk.Create(basePath, paths.Disk, domain.DiskBytes);
        }
        catch (DiskException e)
        {
            throw FleetException.Invalid(e.Message);
        }
        Failpoints.Hit("create.after-storage");
        EnsureTap(paths);
    }

    public void EnsureTap(GuestPaths paths)
    {
        if (DomainTap.Exists(paths.Tap)) return;
        bridge.Ensure();
        DomainTap.Create(paths.Tap, bridge);
    }

    /// <summary>A domain's address lives inside it, its files in its disk: the host holds only its tap.</summary>
    public GuestClaims ReadHeld(string name, GuestPaths paths) => new(name);

    /// <summary>Removes what only a domain owns on the host (a QEMU left running, its tap); safe on a half-created or
    /// already half-removed one. The directories go with the rest of the guest's teardown.</summary>
    public void Teardown(GuestPaths paths)
    {
        if (ReadPid(paths) is { } pid && IsOurQemu(pid, paths)) KillAndWait(pid);
        ReleaseRoot(paths);
        DomainTap.Destroy(paths.Tap);
    }

    /// <summary>After a run of a domain with a virtiofs root: its virtiofsd and the mounted tree go (both are made again
    /// at the next start); nothing for other roots.</summary>
    public static void ReleaseRoot(GuestPaths paths)
    {
        PromotionRoot.StopDaemon(paths);
        PromotionRoot.Unmount(paths);
        PromotionRoot.RemoveNamespaceDir(paths);
    }

    /// <summary>The file that holds the domain's root, or null for a shared (virtiofs) root.</summary>
    public static string? RootDisk(DomainSettings domain, GuestPaths paths) => domain.Root switch
    {
        DomainRoot.Ext4 => paths.Ext4Disk,
        DomainRoot.Virtiofs => null,
        _ => paths.Disk,
    };

    /// <summary>The base disk of the guest's image, which its overlay is over (null when the image is gone).</summary>
    public string? BaseDiskOf(GuestConfig config) =>
        images.Find(config.Image) is { } image ? Path.Combine(Path.GetDirectoryName(image.RootfsPath)!, BaseDisk.FileName) : null;

    // ---- run ----

    public DomainLaunch LaunchFor(GuestConfig config, GuestPaths paths, AcceleratorChoice accelerator, string? incoming = null, bool hold = false)
    {
        var domain = config.Domain!;
        var kernel = kernels.Find(domain.Kernel) ?? throw kernels.MissingError(domain.Kernel);
        var address = GuestAddress.For(System.Net.IPAddress.Parse(config.Network.Ipv4!), options.Subnet);
        // An initramfs from before routed addresses cannot put a /32 on eth0 with an on-link gateway: the domain would boot
        // without a network.
        if (!options.Subnet.Contains(System.Net.IPAddress.Parse(config.Network.Ipv4!)) && !kernel.Features.Contains("routed"))
            throw FleetException.Conflict($"kernel '{kernel.Name}' was built before routed addresses existed and cannot give domain '{config.Name}' its address {config.Network.Ipv4}; rebuild the kernel");
        return new DomainLaunch
        {
            Name = config.Name,
            Accelerator = accelerator.Kind,
            Vmlinux = kernel.Vmlinux,
            Initrd = kernel.Initrd,
            Vcpus = domain.Vcpus,
            MemoryBytes = domain.MaxMemoryBytes,
            Disk = RootDisk(domain, paths) ?? "",
            Root = domain.Root,
            Backing = domain.Root == DomainRoot.Overlay ? BaseDiskOf(config) : null,
            VirtiofsSocket = paths.VirtiofsSocket,
            Init = config.Command,
            Tap = paths.Tap,
            Mac = config.Network.Mac ?? GuestAllocator.Mac(options.StateRoot, config.Name),
            Address = address.Cidr,
            Gateway = address.Gateway.ToString(),
            Resolv = resolvFor(config),
            QmpSocket = paths.QmpSocket,
            ConsoleSocket = paths.ConsoleSocket,
            ConsoleLog = paths.Console,
            AgentSocket = paths.AgentSocket,
            PidFile = paths.PidFile,
            TscKhz = accelerator.Kind == AcceleratorKind.Tcg ? HostTsc.Khz : null,
            Incoming = incoming,
            HoldSocket = hold ? paths.HoldSocket : null,
        };
    }

    /// <summary>Starts QEMU and connects to its QMP socket. If QEMU is missing or dies at start, the error carries what it
    /// printed, and nothing is left running. <paramref name="hold"/>: the initramfs waits for <see cref="DomainHold"/>'s go.</summary>
    public async Task<RunningDomain> LaunchAsync(GuestConfig config, GuestPaths paths, AcceleratorChoice accelerator, string? incoming = null,
        bool hold = false, CancellationToken ct = default)
    {
        // QEMU opens all of these as root: each must be what the agent made, reached through no link.
        paths.RequireLayout(config.Name);
        if (RootDisk(config.Domain!, paths) is { } disk && StateFile.Inspect(paths.GuestsRoot, disk) == StateEntry.Missing)
            throw FleetException.Conflict($"the disk of domain '{config.Name}' ({disk}) is missing; destroy and recreate the domain");
        var launch = LaunchFor(config, paths, accelerator, incoming, hold);
        var qemu = FindProgram(QemuProgram)
            ?? throw FleetException.Conflict($"{QemuProgram} not found in PATH; install QEMU (Debian: apt-get install qemu-system-x86, or run make deps)");
        EnsureTap(paths);
        if (config.Domain!.Root == DomainRoot.Virtiofs)
        {
            try
            {
                await Roots.StartDaemonAsync(config, paths, ct);
            }
            catch
            {
                ReleaseRoot(paths);
                throw;
            }
        }
        Directory.CreateDirectory(paths.RunDir);
        foreach (var stale in new[] { paths.QmpSocket, paths.ConsoleSocket, paths.AgentSocket, paths.HoldSocket, paths.PidFile, paths.QemuLog })
            File.Delete(stale);

        var process = ChildProcess.SpawnLogged(qemu, [qemu, .. QemuCommand.Arguments(launch)], paths.QemuLog);
        var started = DateTimeOffset.UtcNow;
        try
        {
            Failpoints.Hit("domain-start.after-spawn");
            using var connectCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var connect = QmpClient.ConnectAsync(paths.QmpSocket, QmpTimeout, connectCts.Token);
            var first = await Task.WhenAny(connect, process.Exited);
            if (first != connect)
            {
                await connectCts.CancelAsync();
                await Task.WhenAny(connect);
                if (connect.IsCompletedSuccessfully) await connect.Result.DisposeAsync();
                throw new FleetException(FleetError.Failed,
                    $"starting {config.Name} failed: QEMU {process.Exited.Result}: {LastLines(paths.QemuLog, 3)}".TrimEnd(' ', ':'));
            }
            var qmp = await connect;
            var status = await qmp.QueryStatusAsync(ct);
            Failpoints.Hit("domain-start.after-qmp");
            return new RunningDomain(process, qmp, accelerator, started, paths.AgentSocket, paths.QemuLog, paused: !status.Running);
        }
        catch (Exception e)
        {
            process.Signal(9);
            await process.Exited;
            process.Dispose();
            ReleaseRoot(paths);
            if (e is FleetException) throw;
            throw new FleetException(FleetError.Failed, $"starting {config.Name} failed: {e.Message} {LastLines(paths.QemuLog, 3)}".TrimEnd(), e);
        }
    }

    // ---- the guest-driver interface ----

    public async Task<IGuestRun> StartAsync(GuestConfig config, GuestPaths paths, CancellationToken ct)
    {
        var accelerator = await RequireAcceleratorAsync(config.Domain!.Kernel);
        RunningDomain domain;
        try
        {
            domain = await LaunchAsync(config, paths, accelerator, ct: ct);
        }
        catch
        {
            // A shared root's start may have mounted the vserver's layer image before it failed.
            WritableLayer.Release(paths, log);
            throw;
        }
        await SetBalloonTargetAsync(config, domain);
        return domain;
    }

    /// <summary>A started domain boots with all of its maximum memory; its balloon goes to the configured target.</summary>
    public async Task SetBalloonTargetAsync(GuestConfig config, RunningDomain domain)
    {
        domain.BalloonCurrent = config.Domain!.MaxMemoryBytes;
        if (config.Limits.MemoryBytes is not { } target || target >= config.Domain.MaxMemoryBytes) return;
        try
        {
            await domain.SetBalloonAsync(target);
        }
        catch (QmpException e)
        {
            log($"domain {config.Name}: setting the balloon to {target >> 20}M failed: {e.Message}");
        }
    }

    /// <summary>A domain whose QEMU outlived an earlier agent, with its shared root's layer mounted again and its balloon at
    /// the recorded target (a `set` the agent died in may have moved it without recording it).</summary>
    public async Task<IGuestRun?> AdoptAsync(GuestConfig config, GuestPaths paths)
    {
        // QEMU outliving the agent means the host has not rebooted: the accelerator answer cached for this boot holds.
        var accelerator = AcceleratorAsync() is { } probe ? await probe : new AcceleratorChoice(AcceleratorKind.Tcg, "no kernel to probe with", "");
        var running = await AdoptQemuAsync(paths, accelerator);
        if (running is null) return null;
        WritableLayer.Reattach(config, paths, log);
        try
        {
            await ApplyLimitsAsync(config, paths, running);
        }
        catch (Exception e) when (e is QmpException or IOException or ObjectDisposedException)
        {
            log($"domain {config.Name}: applying its recorded limits again failed: {e.Message}");
        }
        return running;
    }

    public GuestExit? CollectUnwatchedEnd(GuestConfig config, GuestPaths paths)
    {
        GuestExit? exit = null;
        if (File.Exists(paths.PidFile))
        {
            ReleaseRoot(paths);
            File.Delete(paths.PidFile);
            exit = new GuestExit(null, null, DateTimeOffset.UtcNow, "ended while no agent was running (status unknown)", Reset: false);
        }
        WritableLayer.Release(paths, log);
        return exit;
    }

    public Task StopAsync(IGuestRun run, TimeSpan timeout) => StopAsync((RunningDomain)run, timeout);

    /// <summary>QEMU's exit with what QMP said of it; its connections close, a shared root's virtiofsd and mounts go.</summary>
    public async Task<GuestExit> EndRunAsync(GuestConfig config, GuestPaths paths, IGuestRun run)
    {
        var domain = (RunningDomain)run;
        var exit = await domain.Ended;
        File.Delete(paths.PidFile);
        await domain.DisposeAsync();
        if (config.Domain?.Root == DomainRoot.Virtiofs)
        {
            ReleaseRoot(paths);
            WritableLayer.Release(paths, log);
        }
        return exit;
    }

    /// <summary>None in a guest's view: a domain's memory is its balloon and QEMU's pages, which <c>vsctl stat</c> shows
    /// with the pool's accounting.</summary>
    public Vserver.Api.GuestUsage? ReadUsage(IGuestRun run) => null;

    /// <summary>xl pause/unpause: the vcpus stop; memory, devices and the console stay.</summary>
    public async Task SetPausedAsync(IGuestRun run, bool paused, CancellationToken ct)
    {
        var domain = (RunningDomain)run;
        if (paused) await domain.Qmp.StopAsync(ct);
        else await domain.Qmp.ContAsync(ct);
        domain.Paused = paused;
    }

    /// <summary>A running domain's memory limit is its balloon target.</summary>
    public async Task ApplyLimitsAsync(GuestConfig config, GuestPaths paths, IGuestRun run)
    {
        var domain = (RunningDomain)run;
        if (config.Limits.MemoryBytes is { } target && target != domain.BalloonCurrent) await domain.SetBalloonAsync(target);
    }

    public async Task<IGuestProcess> ExecAsync(GuestConfig config, GuestPaths paths, IGuestRun run, GuestCommand command, CancellationToken ct)
    {
        var name = config.Name;
        GuestAgentClient agent;
        try
        {
            agent = await ((RunningDomain)run).AgentAsync(GuestAgentReadyTimeout, ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.GuestAgentSilent,
                $"the guest agent of domain '{name}' does not answer ({e.Message})", ("guest", name));
        }
        try
        {
            return await agent.StartAsync(command, ct);
        }
        catch (GuestCommandException e)
        {
            return new RefusedGuestProcess(e.Message, e.ExitCode);
        }
        catch (GuestAgentException e)
        {
            throw FleetException.Conflict($"exec in domain '{name}' failed: {e.Message}");
        }
    }

    /// <summary>Finds a domain whose QEMU outlived an earlier agent: the pid file's process must still be the QEMU of
    /// this guest (its command line names this guest's QMP socket).</summary>
    private async Task<RunningDomain?> AdoptQemuAsync(GuestPaths paths, AcceleratorChoice accelerator, CancellationToken ct = default)
    {
        if (ReadPid(paths) is not { } pid || !IsOurQemu(pid, paths)) return null;
        var process = ProcessHandle.TryOpen(pid);
        if (process is null) return null;
        try
        {
            var qmp = await QmpClient.ConnectAsync(paths.QmpSocket, QmpTimeout, ct);
            var status = await qmp.QueryStatusAsync(ct);
            var started = new DateTimeOffset(File.GetLastWriteTimeUtc(paths.PidFile), TimeSpan.Zero);
            return new RunningDomain(process, qmp, accelerator, started, paths.AgentSocket, paths.QemuLog, paused: !status.Running);
        }
        catch (Exception e) when (e is QmpException or IOException or TimeoutException or OperationCanceledException)
        {
            process.Dispose();
            return null;
        }
    }

    /// <summary>ACPI power-down (the guest agent turns the power button into the guest's own poweroff), then QMP quit, then
    /// SIGKILL, each after the one before had its time. Returns once QEMU is gone.</summary>
    public static async Task StopAsync(RunningDomain running, TimeSpan timeout)
    {
        if (timeout > TimeSpan.Zero)
        {
            try
            {
                // A paused guest cannot act on the power button.
                if (running.Paused) await running.Qmp.ContAsync();
                running.PowerdownRequested = true;
                await running.Qmp.SystemPowerdownAsync();
                await Task.WhenAny(running.Ended, Task.Delay(timeout));
            }
            catch (QmpException)
            {
            }
        }
        if (running.Ended.IsCompleted) return;
        running.EndedByHost = true;
        try
        {
            using var quick = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            await running.Qmp.QuitAsync(quick.Token);
            await Task.WhenAny(running.Ended, Task.Delay(TimeSpan.FromSeconds(3)));
        }
        catch (Exception e) when (e is QmpException or OperationCanceledException)
        {
        }
        if (!running.Ended.IsCompleted) await running.KillAsync();
    }

    /// <summary>The last lines QEMU wrote to its stderr, joined into one line.</summary>
    public static string LastLines(string logPath, int count)
    {
        try
        {
            if (!File.Exists(logPath)) return "";
            var lines = File.ReadAllLines(logPath).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
            return string.Join(" / ", lines.Skip(Math.Max(0, lines.Count - count)));
        }
        catch (IOException)
        {
            return "";
        }
    }

    public static string? FindProgram(string name)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries)
                     .Concat(["/usr/local/bin", "/usr/bin", "/bin"]))
        {
            var path = Path.Combine(dir, name);
            if (File.Exists(path)) return path;
        }
        return null;
    }

    private static int? ReadPid(GuestPaths paths)
    {
        try
        {
            return StateFile.TryReadAllText(paths.RunGuestsRoot, paths.PidFile) is { } text && int.TryParse(text.Trim(), out var pid) ? pid : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    private static bool IsOurQemu(int pid, GuestPaths paths)
    {
        try
        {
            var cmdline = File.ReadAllText($"/proc/{pid}/cmdline").Replace('\0', ' ');
            return cmdline.Contains("qemu", StringComparison.Ordinal) && cmdline.Contains(paths.QmpSocket, StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static void KillAndWait(int pid)
    {
        using var handle = ProcessHandle.TryOpen(pid);
        if (handle is null) return;
        handle.Signal(9);
        handle.Exited.Wait(TimeSpan.FromSeconds(10));
    }
}
