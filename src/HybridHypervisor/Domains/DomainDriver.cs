using HybridHypervisor.Domains.Qmp;
using HybridHypervisor.Model;
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
public sealed class DomainDriver(FleetOptions options, HostBridge bridge, ImageStore images, KernelStore kernels)
{
    public const string QemuProgram = "qemu-system-x86_64";
    private static readonly TimeSpan QmpTimeout = TimeSpan.FromSeconds(15);

    /// <summary>Promoted vservers' roots: the shared tree and its virtiofsd, the copies.</summary>
    public VserverRoot Roots { get; } = new(options, images);

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
            var (basePath, _) = BaseDisk.EnsureBase(Path.GetDirectoryName(image.RootfsPath)!, image.RootfsPath);
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

    /// <summary>Removes what only a domain owns on the host (a QEMU left running, its tap); safe on a half-created or
    /// already half-removed one. The directories go with the rest of the guest's teardown.</summary>
    public static void Teardown(GuestPaths paths)
    {
        if (ReadPid(paths) is { } pid && IsOurQemu(pid, paths)) KillAndWait(pid);
        ReleaseRoot(paths);
        DomainTap.Destroy(paths.Tap);
    }

    /// <summary>After a run of a domain with a virtiofs root: its virtiofsd and the mounted tree go (both are made again
    /// at the next start); nothing for other roots.</summary>
    public static void ReleaseRoot(GuestPaths paths)
    {
        VserverRoot.StopDaemon(paths);
        VserverRoot.Unmount(paths);
        VserverRoot.RemoveNamespaceDir(paths);
    }

    /// <summary>The file that holds the domain's root, or null for a shared (virtiofs) root.</summary>
    public static string? RootDisk(DomainSettings domain, GuestPaths paths) => domain.Root switch
    {
        DomainRoot.Ext4 => paths.Ext4Disk,
        DomainRoot.Virtiofs => null,
        _ => paths.Disk,
    };

    // ---- run ----

    public DomainLaunch LaunchFor(GuestConfig config, GuestPaths paths, AcceleratorChoice accelerator, string? incoming = null, bool hold = false)
    {
        var domain = config.Domain!;
        var kernel = kernels.Find(domain.Kernel) ?? throw FleetException.Conflict(kernels.Missing(domain.Kernel));
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
            VirtiofsSocket = paths.VirtiofsSocket,
            Init = config.Command,
            Tap = paths.Tap,
            Mac = config.Network.Mac ?? DomainTap.MacFor($"{options.StateRoot}\0{config.Name}"),
            Address = $"{config.Network.Ipv4}/{options.Subnet.PrefixLength}",
            Gateway = options.Subnet.Gateway.ToString(),
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
    public async Task<RunningDomain> StartAsync(GuestConfig config, GuestPaths paths, AcceleratorChoice accelerator, string? incoming = null,
        bool hold = false, CancellationToken ct = default)
    {
        if (RootDisk(config.Domain!, paths) is { } disk && !File.Exists(disk))
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

    /// <summary>Finds a domain whose QEMU outlived an earlier agent: the pid file's process must still be the QEMU of
    /// this guest (its command line names this guest's QMP socket).</summary>
    public async Task<RunningDomain?> AdoptAsync(GuestPaths paths, AcceleratorChoice accelerator, CancellationToken ct = default)
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
            return File.Exists(paths.PidFile) && int.TryParse(File.ReadAllText(paths.PidFile).Trim(), out var pid) ? pid : null;
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
