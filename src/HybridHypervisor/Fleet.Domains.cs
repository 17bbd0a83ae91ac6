using System.Net.Sockets;
using HybridHypervisor.Domains;
using HybridHypervisor.Domains.Qmp;
using HybridHypervisor.Model;
using Vserver.Api;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>The verbs only domains have: kernels, the serial console, save and restore.</summary>
public sealed partial class Fleet
{
    private static readonly TimeSpan SaveTimeout = TimeSpan.FromMinutes(10);

    // ---- kernels ----

    public KernelRecord BuildKernel(string name)
    {
        var kernel = Kernels.Build(name);
        _ = AcceleratorAsync();
        return kernel;
    }

    public void RemoveKernel(string name)
    {
        if (Vserver.Isolation.Naming.DnsLabel.Error(name, "kernel") is { } invalid) throw FleetException.Invalid(invalid);
        List<string> users;
        users = _registry.Configs().Where(c => c.Domain?.Kernel == name).Select(c => c.Name).ToList();
        if (users.Count > 0)
            throw FleetException.Conflict($"kernel '{name}' boots {string.Join(", ", users)}; destroy those domains first");
        Kernels.Remove(name);
    }

    // ---- console ----

    /// <summary>
    /// Connects to a running domain's serial console (QEMU's chardev socket: what the guest prints comes out, what is
    /// written goes to its ttyS0). One client at a time, as QEMU serves one; the console log keeps everything anyway.
    /// Dispose the stream to detach.
    /// </summary>
    public async Task<Stream> AttachConsoleAsync(string name, CancellationToken ct = default)
    {
        var g = await LockGuestAsync(name, ct);
        try
        {
            if (g.Config.Kind != GuestKind.Domain)
                throw FleetException.Coded(FleetError.Conflict, ErrorCodes.NotADomain,
                    $"'{name}' is a vserver: it has no serial console (its init's output is in {_store.PathsFor(name).Console})",
                    ("guest", name), ("operation", "console"));
            if (g.Domain is not { } domain)
                throw FleetException.Coded(FleetError.Conflict, ErrorCodes.NotRunning, $"domain '{name}' is not running", ("guest", name));
            if (g.ConsoleAttached)
                throw FleetException.Coded(FleetError.Conflict, ErrorCodes.ConsoleBusy,
                    $"the console of '{name}' is attached elsewhere (one client at a time)", ("guest", name));
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(_store.PathsFor(name).ConsoleSocket), ct);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            g.ConsoleAttached = true;
            return new ConsoleStream(socket, () =>
            {
                if (ReferenceEquals(g.Domain, domain)) g.ConsoleAttached = false;
            });
        }
        finally
        {
            g.Lock.Release();
        }
    }

    private sealed class ConsoleStream(Socket socket, Action detached) : NetworkStream(socket, ownsSocket: true)
    {
        private int _disposed;

        protected override void Dispose(bool disposing)
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) detached();
            base.Dispose(disposing);
        }
    }

    // ---- save / restore ----

    /// <summary>
    /// `xl save`: the running domain's memory and devices to <paramref name="file"/> (through QEMU's migration stream,
    /// the guest paused first so memory and disk agree), with its disk overlay and config; then the domain is gone
    /// from this host until `restore`. On any failure before QEMU ends, the domain runs on and no file is left.
    /// </summary>
    public async Task SaveAsync(string name, string file, CancellationToken ct = default)
    {
        if (!Path.IsPathFullyQualified(file)) throw FleetException.Invalid($"save file '{file}' is not an absolute path");
        await _membership.WaitAsync(ct);
        try
        {
            var g = await LockGuestAsync(name, ct);
            try
            {
                if (g.Config.Kind != GuestKind.Domain)
                    throw FleetException.Coded(FleetError.Conflict, ErrorCodes.NotADomain,
                        $"'{name}' is a vserver: save and restore are for domains (a vserver's state is its files, which stopping it keeps)",
                        ("guest", name), ("operation", "save"));
                if (g.Domain is not { } domain) throw FleetException.Conflict($"domain '{name}' is not running: there is no state to save (its disk stays with it)");
                if (g.Config.Domain!.Root != DomainRoot.Overlay)
                    throw FleetException.Conflict(g.Config.Domain.Root == DomainRoot.Virtiofs
                        ? $"domain '{name}' boots from its vserver's files shared through virtiofs, whose state QEMU cannot save; stop it instead (its files stay), or demote it and promote it again with a copied root"
                        : $"domain '{name}' boots from an ext4 image of its own, which save files do not carry (they hold a disk over its image); stop it instead (its disk stays)");
                if (File.Exists(file) || Directory.Exists(file)) throw FleetException.Conflict($"{file} already exists; give a new file name or remove it");
                var dir = Path.GetDirectoryName(file)!;
                if (!Directory.Exists(dir)) throw FleetException.Invalid($"directory {dir} does not exist; create it or save elsewhere");
                var part = Path.Combine(dir, $".{Path.GetFileName(file)}.part-{Guid.NewGuid():N}");
                var paths = _store.PathsFor(name);
                var accelerator = domain.Accelerator;
                var wasPaused = g.Paused;
                long migrationOffset;
                _store.BeginIntent(name, new GuestIntent { Operation = "save", Began = DateTimeOffset.UtcNow, WasRunning = true, WasPaused = wasPaused, File = file, PartFile = part });
                Failpoints.Hit("save.after-intent");
                try
                {
                    migrationOffset = SaveFile.WriteHeader(part, new SaveHeader { Config = g.Config, Accelerator = accelerator.Kind, SavedAt = DateTimeOffset.UtcNow });
                    Failpoints.Hit("save.after-header");
                    if (!wasPaused) await domain.Qmp.StopAsync(ct);
                    Failpoints.Hit("save.after-pause");
                    // The default cap (128 MiB/s) would make a save of a large guest needlessly slow; a file takes any rate.
                    await domain.Qmp.MigrateSetParametersAsync(maxBandwidthBytesPerSecond: 8L << 30, ct: ct);
                    await domain.Qmp.MigrateAsync("exec:cat >> " + QmpMigrationUri.ShellQuote(part), ct);
                    await WaitForMigrationAsync(domain, part, ct);
                    Failpoints.Hit("save.after-migrate");
                }
                catch (Exception e)
                {
                    File.Delete(part);
                    _store.EndIntent(name);
                    if (!wasPaused && !domain.Ended.IsCompleted)
                    {
                        try
                        {
                            await domain.Qmp.ContAsync(CancellationToken.None);
                        }
                        catch (QmpException)
                        {
                        }
                    }
                    throw e as FleetException ?? new FleetException(FleetError.Failed, $"saving {name} failed: {e.Message}", e);
                }

                // The state is in the file; QEMU (paused, its disks flushed by the migration) ends now.
                g.StopRequested = true;
                domain.EndedByHost = true;
                await DomainDriver.StopAsync(domain, TimeSpan.Zero);
                await EndRunLockedAsync(g, domain);
                Failpoints.Hit("save.after-qemu-end");
                try
                {
                    SaveFile.Finish(part, migrationOffset, paths.Disk);
                    Failpoints.Hit("save.after-finish");
                    File.Move(part, file);
                    Failpoints.Hit("save.after-rename");
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    File.Delete(part);
                    _store.EndIntent(name);
                    throw new FleetException(FleetError.Failed, ErrorCodes.SaveFailed,
                        new Dictionary<string, string>(StringComparer.Ordinal) { ["guest"] = name, ["file"] = file },
                        $"saving {name} failed writing {file}: {e.Message}; the domain is stopped with its disk intact", e);
                }
                _store.Save(g.Config with { Phase = GuestPhase.Destroying });
                Failpoints.Hit("save.after-mark");
                Teardown(paths);
                ForgetTornDown(g);
                _log($"saved domain {name} to {file}");
            }
            finally
            {
                g.Lock.Release();
            }
        }
        finally
        {
            _membership.Release();
        }
    }

    private static async Task WaitForMigrationAsync(RunningDomain domain, string part, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(SaveTimeout);
        while (true)
        {
            var info = await domain.Qmp.QueryMigrateAsync(deadline.Token);
            if (info.IsCompleted) return;
            if (info.IsFailed)
                throw new FleetException(FleetError.Failed, $"QEMU could not write the state to {part}: {info.ErrorDescription ?? info.Status}");
            await Task.Delay(TimeSpan.FromMilliseconds(20), deadline.Token);
        }
    }

    /// <summary>
    /// `xl restore`: recreates the domain saved in <paramref name="file"/> under its name and address, with its disk as
    /// it was, and resumes it where it stopped. Refuses a file that is not a save file, a name or address in use, or a
    /// state saved under another accelerator; nothing is left behind on failure.
    /// </summary>
    public async Task<GuestView> RestoreAsync(string file, CancellationToken ct = default)
    {
        if (!Path.IsPathFullyQualified(file)) throw FleetException.Invalid($"save file '{file}' is not an absolute path");
        var layout = SaveFile.Read(file);
        var saved = layout.Header.Config with { Phase = GuestPhase.Creating };
        var name = saved.Name;
        if (GuestConfigValidator.Validate(saved, _options.Subnet, _hostCpus, routed: RoutedRange) is { } invalid)
            throw FleetException.Invalid($"{file}: the saved domain's config is not valid here: {invalid}");
        if (saved.Kind != GuestKind.Domain) throw FleetException.Invalid($"{file} holds no domain");
        var image = Images.Find(saved.Image)
            ?? throw FleetException.Coded(FleetError.Conflict, ErrorCodes.ImageMissing, $"the saved domain's image '{saved.Image}' is not built here",
                ("image", saved.Image));
        if (Kernels.Find(saved.Domain!.Kernel) is null) throw Kernels.MissingError(saved.Domain.Kernel);
        var accelerator = await Domains.RequireAcceleratorAsync(saved.Domain.Kernel);
        if (accelerator.Kind != layout.Header.Accelerator)
            throw FleetException.Conflict($"{file} was saved under {layout.Header.Accelerator.ToString().ToLowerInvariant()} and domains here run under " +
                $"{accelerator.Kind.ToString().ToLowerInvariant()}: QEMU cannot restore it across accelerators");

        await _membership.WaitAsync(ct);
        try
        {
            if (_registry.NameTaken(name)) throw FleetException.NameTaken(name);
            var paths = _store.PathsFor(name);
            if (Directory.Exists(paths.Dir))
                throw FleetException.Conflict($"{paths.Dir} already exists but is no guest this agent knows; remove it or pick another name");
            AllocateAddress(saved.Network.Ipv4);
            RefuseTakenPorts(saved, $"the saved domain '{name}'");
            using var reservation = Admit(saved, "restore", runningOnly: false);
            _registry.BeginCreate(saved);
            _store.Save(saved);
            Failpoints.Hit("restore.after-config");
            RunningDomain? domain = null;
            try
            {
                Directory.CreateDirectory(paths.RunDir);
                SaveFile.ExtractDisk(file, layout, paths.Disk);
                Failpoints.Hit("restore.after-disk");
                // The overlay names its base by absolute path: point it at this host's copy of the image's base.
                var (basePath, _) = BaseDisk.EnsureBase(Path.GetDirectoryName(image.RootfsPath)!, image.RootfsPath);
                HostProgram.Run("qemu-img", ["rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", basePath, paths.Disk]);
                domain = await Domains.LaunchAsync(saved, paths, accelerator, SaveFile.IncomingUri(file, layout), ct: ct);
                Failpoints.Hit("restore.after-start");
                await WaitForIncomingAsync(domain, paths, ct);
                Failpoints.Hit("restore.after-incoming");
                var config = saved with { Phase = GuestPhase.Ready };
                _store.Save(config);
                Failpoints.Hit("restore.after-ready");
                var runtime = new GuestRuntime(config);
                await runtime.Lock.WaitAsync(ct);
                try
                {
                    await Domains.SetBalloonTargetAsync(config, domain);
                    BeginRun(runtime, domain);
                }
                finally
                {
                    runtime.Lock.Release();
                }
                _registry.Add(runtime);
                GuestCame(config);
                _log($"restored domain {name} from {file}");
                return View(runtime);
            }
            catch (Exception e)
            {
                if (domain is not null)
                {
                    await domain.KillAsync();
                    await domain.DisposeAsync();
                }
                Teardown(paths);
                _registry.AbandonCreate(name);
                throw e as FleetException ?? new FleetException(FleetError.Failed, $"restoring {name} from {file} failed: {e.Message}", e);
            }
        }
        finally
        {
            _membership.Release();
        }
    }

    /// <summary>Waits until QEMU has read the whole saved state, then lets the guest run on.</summary>
    private static async Task WaitForIncomingAsync(RunningDomain domain, GuestPaths paths, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(SaveTimeout);
        while (true)
        {
            if (domain.Ended.IsCompleted)
                throw new FleetException(FleetError.Failed, $"QEMU could not load the saved state: {DomainDriver.LastLines(paths.QemuLog, 2)}");
            QmpStatus status;
            try
            {
                status = await domain.Qmp.QueryStatusAsync(deadline.Token);
            }
            catch (QmpConnectionClosedException)
            {
                await domain.Ended;
                continue;
            }
            if (status.RawStatus != "inmigrate")
            {
                if (!status.Running) await domain.Qmp.ContAsync(deadline.Token);
                domain.Paused = false;
                return;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(10), deadline.Token);
        }
    }
}
