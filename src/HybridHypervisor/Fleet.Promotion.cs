using Vserver.Api;
using HybridHypervisor.Guests;
using HybridHypervisor.Domains;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Vserver.Isolation.Network;
using Vserver.Isolation.Storage;
using SharedMemoryAccounting;

namespace HybridHypervisor;

/// <summary>What an operator asks of a promotion; null means "carry over from the vserver".</summary>
public sealed record PromoteOptions(string? Kernel = null, int? Vcpus = null, long? MemoryBytes = null, bool Copy = false,
    long? DiskBytes = null, bool DryRun = false, TimeSpan? BootTimeout = null);

/// <summary>What a promotion or demotion gives (or gave) the guest, in the operator's terms.</summary>
public sealed record ConversionPlan(string Name, string From, string To, IReadOnlyList<(string What, string Value)> Settings, IReadOnlyList<string> Notes);

/// <summary>
/// Promotion (`vsctl promote`): a vserver becomes a domain of the same name, address, MAC, restart policy and memory,
/// booting its own kernel from the vserver's files (shared in place through virtiofs, or copied into an ext4 image), so
/// its own init starts the services again. Demotion (`vsctl demote`) is the way back. Each step that fails rolls the guest
/// back to what it was, running if it ran, and the error names the step.
/// </summary>
public sealed partial class Fleet
{
    private static readonly TimeSpan DefaultBootTimeout = TimeSpan.FromSeconds(90);

    public async Task<(ConversionPlan Plan, GuestView? Guest)> PromoteAsync(string name, PromoteOptions options, CancellationToken ct = default)
    {
        var g = await LockGuestAsync(name, ct);
        try
        {
            var vserver = g.Config;
            if (vserver.Kind != GuestKind.Vserver)
                throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.AlreadyDomain, $"'{name}' is already a domain", ("guest", name));
            if (g.Paused) throw FleetException.Paused(name);
            var paths = _store.PathsFor(name);
            var (domainConfig, plan) = PlanPromotion(vserver, options, paths);
            var wasRunning = g.IsRunning;
            var besideRefusal = wasRunning ? BootBesideRefusal(g, vserver, domainConfig, options) : null;
            var beside = wasRunning && besideRefusal is null;
            plan = plan with
            {
                Settings = [.. plan.Settings, ("cut-over", !wasRunning
                    ? "none: the vserver is not running, nor will the domain be"
                    : beside
                        ? "the domain's kernel boots beside the running vserver, which stops once that kernel is up"
                        : $"the vserver stops first, then the domain boots (not beside it: {besideRefusal})")],
            };
            if (options.DryRun) return (plan, null);

            await _conversion.CheckBootAsync(domainConfig);
            using var reservation = AdmitChange(g, domainConfig, "promote");
            var intent = new GuestIntent { Operation = "promote", Began = DateTimeOffset.UtcNow, WasRunning = wasRunning, Copy = options.Copy, Beside = beside, Begun = [] };
            _store.BeginIntent(name, intent);
            Failpoints.Hit("promote.after-intent");
            var run = new PromotionRun(vserver, domainConfig, wasRunning, beside, options.Copy, options.BootTimeout ?? DefaultBootTimeout);
            var steps = PromotionSteps(g, paths, run);
            try
            {
                await RunConversionAsync(name, intent, steps, "promoting", "vserver", ct);
            }
            finally
            {
                if (run.Hold is { } hold) await hold.DisposeAsync();
            }
            if (run.Domain is { } domain)
            {
                await _conversion.SetBalloonTargetAsync(g.Config, domain);
                BeginRun(g, domain);
            }
            // The copy is the domain's root now; the vserver's own layers are no longer anyone's.
            if (options.Copy) DiscardLayers(paths);
            Failpoints.Hit("promote.after-discard");
            _store.EndIntent(name);
            _log($"promoted {name} to a domain ({plan.Settings.First(s => s.What == "root").Value}) {steps.Summary()}");
            return (plan, View(g));
        }
        finally
        {
            g.Lock.Release();
        }
    }

    /// <summary>What one promotion decided and what its steps made along the way (the domain's QEMU, the held boot).</summary>
    private sealed class PromotionRun(GuestConfig vserver, GuestConfig domain, bool wasRunning, bool beside, bool copy, TimeSpan bootTimeout)
    {
        public GuestConfig Vserver { get; } = vserver;
        /// <summary>The domain's config; a copy's disk size is set once the copy is made.</summary>
        public GuestConfig DomainConfig { get; set; } = domain;
        public bool WasRunning { get; } = wasRunning;
        public bool Beside { get; } = beside;
        public bool Copy { get; } = copy;
        public TimeSpan BootTimeout { get; } = bootTimeout;
        public IGuestRun? Domain { get; set; }
        public IDomainHold? Hold { get; set; }
    }

    /// <summary>
    /// A promotion as steps, each with its undo. Beside a running vserver (a shared root): share its root, boot the domain
    /// held in its initramfs, wait for its kernel, stop the vserver, move the address, let the domain go on and wait until
    /// it is up, record it. Otherwise: stop the vserver, copy its root if asked, move the address, boot the domain if the
    /// vserver ran and wait until it is up, record it. A rollback ends with the vserver running again if it ran and no
    /// longer serves; before that every begun step is undone (the domain's QEMU killed, the root released, the tap gone
    /// and the vserver's network back, a copy deleted, the vserver's config recorded again).
    /// </summary>
    private ConversionSteps PromotionSteps(GuestRuntime g, GuestPaths paths, PromotionRun run)
    {
        var steps = new List<ConversionStep>();
        async Task KillDomainAsync()
        {
            // After an agent's death there is no run here: the promotion's QEMU is found by its pid file.
            await _conversion.KillDomainAsync(run.Domain, paths);
            run.Domain = null;
            ReleaseSharedRoot();
            _conversion.RemoveTap(paths);
        }
        // A vserver still serving (the domain failed beside it) keeps its layer mounted; a stopped one's goes.
        void ReleaseSharedRoot() => _conversion.ReleaseSharedRoot(paths, keepLayer: g.Run is not null);
        Task GiveTheAddressBackAsync()
        {
            _conversion.RemoveTap(paths);
            _conversion.EnsureVserverNetwork(run.Vserver, paths);
            return Task.CompletedTask;
        }
        if (run.Beside)
        {
            steps.Add(new("share the running vserver's root", _ =>
            {
                _conversion.ShareRoot(run.Vserver, paths, g.Run!);
                Failpoints.Hit("promote.after-grab");
                return Task.CompletedTask;
            }, () =>
            {
                ReleaseSharedRoot();
                return Task.CompletedTask;
            }));
            steps.Add(new("boot the domain beside the vserver", async ct =>
            {
                run.Domain = await _conversion.BootDomainAsync(run.DomainConfig, paths, held: true, ct);
                Failpoints.Hit("promote.after-boot");
                run.Hold = await _conversion.ConnectHoldAsync(paths, ct);
            }, KillDomainAsync));
            steps.Add(new("wait for the domain's kernel", async ct =>
            {
                await run.Hold!.WaitReadyAsync(run.BootTimeout, ct);
                Failpoints.Hit("promote.after-ready");
            }));
            steps.Add(new("stop the vserver", async _ =>
            {
                await StopLockedAsync(g, _options.DefaultStopTimeout);
                // The vserver's end cleared the run directory's pid file, which QEMU had written: the next agent finds
                // (adopts) the domain by it.
                File.WriteAllText(paths.PidFile, $"{run.Domain!.Pid}\n");
                Failpoints.Hit("promote.after-stop");
            }));
            steps.Add(new("move the address to the domain", async ct =>
            {
                _conversion.RemoveVserverNetwork(paths);
                Failpoints.Hit("promote.before-release");
                await run.Hold!.ReleaseAsync(ct);
            }, GiveTheAddressBackAsync));
        }
        else
        {
            steps.Add(new("stop the vserver", async _ =>
            {
                if (run.WasRunning) await StopLockedAsync(g, _options.DefaultStopTimeout);
                Failpoints.Hit("promote.after-stop");
            }));
            if (run.Copy)
            {
                steps.Add(new("copy the root into an ext4 image", _ =>
                {
                    var size = _conversion.CopyRootToImage(run.Vserver, paths, run.DomainConfig.Domain!.DiskBytes);
                    Failpoints.Hit("promote.after-copy");
                    _conversion.ReleaseSharedRoot(paths, keepLayer: true);
                    run.DomainConfig = run.DomainConfig with { Domain = run.DomainConfig.Domain with { DiskBytes = size } };
                    return Task.CompletedTask;
                }, () =>
                {
                    ReleaseSharedRoot();
                    File.Delete(paths.Ext4Disk);
                    return Task.CompletedTask;
                }));
            }
            steps.Add(new("move the address to the domain", _ =>
            {
                _conversion.RemoveVserverNetwork(paths);
                _conversion.EnsureTap(paths);
                Failpoints.Hit("promote.before-boot");
                return Task.CompletedTask;
            }, GiveTheAddressBackAsync));
            if (run.WasRunning)
            {
                steps.Add(new("boot the domain", async ct =>
                {
                    run.Domain = await _conversion.BootDomainAsync(run.DomainConfig, paths, held: false, ct);
                    Failpoints.Hit("promote.after-boot");
                }, KillDomainAsync));
            }
        }
        if (run.WasRunning)
        {
            steps.Add(new("wait for the domain to come up", async ct =>
            {
                await _conversion.WaitUpAsync(run.Domain!, paths, run.BootTimeout, ct);
                if (run.Beside) Failpoints.Hit("promote.after-up");
            }));
        }
        steps.Add(new("record the domain", _ =>
        {
            g.Config = run.DomainConfig;
            _store.Save(run.DomainConfig);
            Failpoints.Hit("promote.after-record");
            return Task.CompletedTask;
        }, () =>
        {
            g.Config = run.Vserver;
            _store.Save(run.Vserver);
            return Task.CompletedTask;
        }));
        return new ConversionSteps(steps, async () =>
        {
            // A domain booting beside the vserver fails before the vserver stops: it never stopped serving.
            var served = g.IsRunning;
            if (run.WasRunning && !served) await StartLockedAsync(g);
            var name = run.Vserver.Name;
            return served
                ? $"rolled back: '{name}' is still the vserver it was and never stopped serving"
                : $"rolled back: '{name}' is a vserver again{(run.WasRunning ? " and runs" : "")}, with its files and address";
        });
    }

    /// <summary>Runs a conversion's steps, journaling each before it begins; a failure (rolled back by then) ends the
    /// journal and becomes one refusal naming the step, why, and what the guest is now.</summary>
    private async Task RunConversionAsync(string name, GuestIntent intent, ConversionSteps steps, string doing, string kindBefore, CancellationToken ct)
    {
        try
        {
            await steps.RunAsync(begun => _store.BeginIntent(name, intent with { Begun = [.. begun] }),
                undo => RollbackFailed(name, kindBefore, undo), ct);
        }
        catch (ConversionFailedException e)
        {
            _store.EndIntent(name);
            throw new FleetException(e.Cause is FleetException { Kind: FleetError.Conflict } ? FleetError.Conflict : FleetError.Failed,
                $"{doing} '{name}' failed at step '{e.Step}': {Reason(e.Cause)}; {e.Outcome}", e.Cause);
        }
    }

    /// <summary>The outcome of a conversion whose rollback failed too: what the guest is now, and how to go on.</summary>
    private string RollbackFailed(string name, string kind, Exception e)
    {
        _log($"rolling back the conversion of {name} failed: {e.Message}");
        return $"rolling back failed too ({Reason(e)}): '{name}' is a {kind} again, stopped";
    }

    /// <summary>The domain a vserver becomes: everything checked before anything is touched.</summary>
    private (GuestConfig Domain, ConversionPlan Plan) PlanPromotion(GuestConfig vserver, PromoteOptions options, GuestPaths paths)
    {
        var notes = new List<string>();
        var kernelName = options.Kernel ?? DomainSettings.DefaultKernel;
        if (Vserver.Isolation.Naming.DnsLabel.Error(kernelName, "kernel") is { } kernelError) throw FleetException.Invalid(kernelError);
        var kernel = Kernels.Find(kernelName) ?? throw Kernels.MissingError(kernelName);
        var limits = vserver.Limits;

        var memory = options.MemoryBytes ?? limits.MemoryBytes;
        if (memory is null)
        {
            memory = DomainSettings.DefaultMemoryBytes;
            notes.Add($"the vserver has no memory limit: the domain gets {memory >> 20}M unless a memory size is given");
        }
        var mib = 1L << 20;
        var memoryBytes = Math.Max((memory.Value + mib - 1) / mib * mib, GuestConfigValidator.MinDomainMemoryBytes);
        if (memoryBytes != memory) notes.Add($"memory {memory} bytes rounds up to {memoryBytes >> 20}M for the domain");

        var vcpus = options.Vcpus ?? (int)Math.Ceiling(limits.Cpus ?? 1);
        if (options.Vcpus is null && limits.Cpus is { } cpus) notes.Add($"CPU share {cpus:0.##} rounds up to {vcpus} vcpu{(vcpus == 1 ? "" : "s")}");
        var min = limits.MemoryMinBytes;
        if (min is { } m && m < GuestConfigValidator.MinDomainMemoryBytes)
        {
            min = m == 0 ? null : GuestConfigValidator.MinDomainMemoryBytes;
            if (min is not null) notes.Add($"guarantee {m >> 20}M rises to a domain's minimum of 64M");
        }
        if (limits.Pids is { } pids) notes.Add($"the process limit ({pids}) does not apply inside a domain; demote restores it");
        if (vserver.Command is { } command)
        {
            if (QemuCommand.InitError(command) is { } initError)
                throw FleetException.Invalid($"cannot promote '{vserver.Name}': its command cannot be a domain's init: {initError}; recreate it without a command or with a simpler one");
            notes.Add($"the domain runs the vserver's command as its init: {string.Join(' ', command)}");
        }
        if (options.DiskBytes is not null && !options.Copy)
            throw FleetException.Invalid("--disk sizes the ext4 image of --copy; a shared (virtiofs) root has no size of its own");

        var root = options.Copy ? DomainRoot.Ext4 : DomainRoot.Virtiofs;
        var settings = new DomainSettings
        {
            Kernel = kernelName,
            Vcpus = vcpus,
            MaxMemoryBytes = memoryBytes,
            // A copy's disk is at least the vserver's disk quota, so what fitted still fits.
            DiskBytes = options.Copy ? options.DiskBytes ?? Math.Max(limits.DiskBytes ?? 0, DomainSettings.DefaultDiskBytes) : 0,
            Root = root,
        };
        if ((GuestConfigValidator.DomainError(settings, memoryBytes, _hostCpus, HostMemory.TotalBytes)
             ?? GuestConfigValidator.DomainGuaranteeError(settings, min, memoryBytes)) is { } error)
            throw FleetException.Invalid($"cannot promote '{vserver.Name}': {error}");
        if (root == DomainRoot.Virtiofs && _conversion.SharedRootRefusal() is { } refusal) throw FleetException.Conflict(refusal);

        var mac = vserver.Network.Mac ?? GuestNetwork.ReadMac(paths.Netns) ?? GuestAllocator.Mac(_options.StateRoot, vserver.Name);
        var rootText = root == DomainRoot.Virtiofs
            ? "virtiofs: the vserver's files shared in place, nothing copied" +
              (limits.DiskBytes is { } quota ? $"; its disk quota of {ByteSize.FormatExact(quota)} still applies (the layer image stays mounted while the domain runs)" : "")
            : $"ext4 image {ByteSize.FormatExact(settings.DiskBytes)} (at least what the files need): a copy of the vserver's files";
        var detail = $"promoted from vserver: kernel {kernelName} ({kernel.Version}), {vcpus} vcpu{(vcpus == 1 ? "" : "s")}, " +
                     $"{memoryBytes >> 20}M, root {(root == DomainRoot.Virtiofs ? "virtiofs" : "ext4 copy")}";
        var domain = vserver with
        {
            Kind = GuestKind.Domain,
            Domain = settings,
            // A shared root is the vserver's own layer: with a disk quota, its image (see WritableLayer).
            Limits = new GuestLimits { MemoryBytes = memoryBytes, MemoryMinBytes = min, DiskBytes = root == DomainRoot.Virtiofs ? limits.DiskBytes : null },
            Network = vserver.Network with { Mac = mac },
            History = [.. vserver.History, new GuestEvent(DateTimeOffset.UtcNow, "promoted", detail, limits)],
        };
        var plan = new ConversionPlan(vserver.Name, "vserver", "domain",
        [
            ("kernel", $"{kernelName} ({kernel.Version})"),
            ("vcpus", vcpus.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("memory", $"{memoryBytes >> 20}M"),
            ("guarantee", min is { } g ? $"{g >> 20}M" : $"{memoryBytes >> 20}M (a domain's whole memory unless a guarantee is set)"),
            ("root", rootText),
            ("address", $"{vserver.Network.Ipv4} (MAC {mac})"),
            ("restart", RestartPolicies.Format(vserver.Restart)),
        ], notes);
        return (domain, plan);
    }

    /// <summary>Why the domain cannot boot beside the running vserver (its kernel must be up before the vserver stops),
    /// or null if it can: a shared root, a kernel whose initramfs can hold, the vserver's init known, and room in the
    /// pool for both for the seconds they overlap.</summary>
    private string? BootBesideRefusal(GuestRuntime g, GuestConfig vserver, GuestConfig domain, PromoteOptions options)
    {
        if (options.Copy) return "--copy needs the files still, so the vserver stops before they are copied";
        if (Kernels.Find(domain.Domain!.Kernel) is { } kernel && !kernel.Features.Contains("hold"))
            return $"kernel '{kernel.Name}' was built before held boots existed; a rebuilt one can hold";
        if (g.Run is null) return "the vserver's init is not known";
        var pool = Pool;
        var guests = _registry.Guests();
        lock (_fleetLock)
        {
            var running = guests
                .Where(o => o.Config.Name != vserver.Name && !_reserved.ContainsKey(o.Config.Name) && o.IsRunning)
                .Select(o => CommitmentOf(o.Config))
                .Concat(_reserved.Values.Where(r => r.Name != vserver.Name))
                .Append(CommitmentOf(vserver) with { Name = $"{vserver.Name} (the vserver, until the cut-over)" });
            return Admission.Refusal(pool, running, CommitmentOf(domain), "boot beside the vserver");
        }
    }

    // ---- demote ----

    public async Task<(ConversionPlan Plan, GuestView? Guest)> DemoteAsync(string name, bool dryRun, CancellationToken ct = default)
    {
        await _membership.WaitAsync(ct);
        try
        {
            var g = await LockGuestAsync(name, ct);
            try
            {
                var domain = g.Config;
                if (domain.Kind != GuestKind.Domain)
                    throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.AlreadyVserver, $"'{name}' is a vserver already", ("guest", name));
                var paths = _store.PathsFor(name);
                var (vserver, plan) = PlanDemotion(domain, paths);
                if (dryRun) return (plan, null);

                using var reservation = AdmitChange(g, vserver, "demote");
                var wasRunning = g.IsRunning;
                var intent = new GuestIntent { Operation = "demote", Began = DateTimeOffset.UtcNow, WasRunning = wasRunning, Begun = [] };
                _store.BeginIntent(name, intent);
                Failpoints.Hit("demote.after-intent");
                var steps = DemotionSteps(g, paths, domain, vserver, wasRunning);
                await RunConversionAsync(name, intent, steps, "demoting", "domain", ct);
                // The files live in the writable layer now; the disk the domain booted from is no one's.
                File.Delete(paths.Ext4Disk);
                File.Delete(paths.Disk);
                _store.EndIntent(name);
                _log($"demoted {name} to a vserver {steps.Summary()}");
                return (plan, View(g));
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

    /// <summary>
    /// A demotion as steps, each with its undo: stop the domain, copy its disk's files into a writable layer (unless its
    /// root is the vserver's own, shared), move the address, record the vserver, start it if the domain ran. A rollback
    /// ends with the domain running again if it ran; before that every begun step is undone (the vserver stopped, the
    /// domain's config recorded again, the vserver's network and cgroup gone and the tap back, a copied-out layer gone).
    /// <paramref name="vserver"/> is null when the plan is rebuilt to undo one after an agent's death.
    /// </summary>
    private ConversionSteps DemotionSteps(GuestRuntime g, GuestPaths paths, GuestConfig domain, GuestConfig? vserver, bool wasRunning)
    {
        var settings = domain.Domain!;
        var steps = new List<ConversionStep>
        {
            new("stop the domain", async _ =>
            {
                if (wasRunning) await StopLockedAsync(g, _options.DefaultStopTimeout);
                Failpoints.Hit("demote.after-stop");
            }),
        };
        if (settings.Root != DomainRoot.Virtiofs)
        {
            steps.Add(new("copy the disk's files into a writable layer", async _ =>
            {
                await _conversion.CopyOutOfDiskAsync(vserver!, settings, paths);
                Failpoints.Hit("demote.after-copy");
            }, () =>
            {
                // A copied-out layer is the demotion's; a shared root's layer is the domain's own and stays.
                DiscardLayers(paths);
                return Task.CompletedTask;
            }));
        }
        steps.Add(new("move the address to the vserver", _ =>
        {
            if (!WritableLayer.HasQuota(vserver!)) Directory.CreateDirectory(paths.Work);
            Directory.CreateDirectory(paths.Rootfs);
            _conversion.RemoveTap(paths);
            Failpoints.Hit("demote.after-tap");
            _conversion.EnsureVserverNetwork(vserver!, paths);
            Failpoints.Hit("demote.after-network");
            return Task.CompletedTask;
        }, () =>
        {
            _conversion.RemoveVserverNetwork(paths);
            _conversion.ReleaseVserverCgroup(paths);
            _conversion.EnsureTap(paths);
            return Task.CompletedTask;
        }));
        steps.Add(new("record the vserver", _ =>
        {
            // Recorded before it starts: an agent that dies from here on finds a vserver and adopts or starts it.
            g.Config = vserver!;
            _store.Save(vserver!);
            Failpoints.Hit("demote.after-record");
            return Task.CompletedTask;
        }, () =>
        {
            g.Config = domain;
            _store.Save(domain);
            return Task.CompletedTask;
        }));
        if (wasRunning)
        {
            steps.Add(new("start the vserver", async ct =>
            {
                await StartLockedAsync(g, ct);
                Failpoints.Hit("demote.after-start");
            }, async () =>
            {
                // Only the vserver's run: after an agent's death this undo may find the domain still running.
                if (g.Run is not null && g.Config.Kind == GuestKind.Vserver) await StopLockedAsync(g, TimeSpan.Zero);
            }));
        }
        return new ConversionSteps(steps, async () =>
        {
            // Unless its QEMU never stopped (a failed stop), the domain runs again if it ran.
            if (wasRunning && !g.IsRunning) await StartLockedAsync(g);
            return $"rolled back: '{domain.Name}' is a domain again{(wasRunning ? " and runs" : "")}";
        });
    }

    private (GuestConfig Vserver, ConversionPlan Plan) PlanDemotion(GuestConfig domain, GuestPaths paths)
    {
        var settings = domain.Domain!;
        var before = domain.History.LastOrDefault(e => e.Event == "promoted")?.VserverLimits;
        var notes = new List<string>();
        var security = domain.Security;
        if (!security.Privileged && security.IdMap is null)
        {
            security = security with { IdMap = AllocateIds() };
            notes.Add($"it gets host ids {security.IdMap!.HostBase}..{security.IdMap.HostEnd - 1} for its root and users (unprivileged)");
        }
        if (settings.Root != DomainRoot.Virtiofs && Images.Find(domain.Image) is null)
            throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.ImageMissing,
                $"the image '{domain.Image}' the vserver's files would lie over is gone", ("image", domain.Image), ("guest", domain.Name));
        if (domain.Command is null) notes.Add("its init is the image's /sbin/init, as the domain's was");
        var limits = new GuestLimits
        {
            MemoryBytes = domain.Limits.MemoryBytes ?? settings.MaxMemoryBytes,
            MemoryMinBytes = domain.Limits.MemoryMinBytes,
            Cpus = before?.Cpus ?? settings.Vcpus,
            Pids = before?.Pids,
            // A shared root's layer is the vserver's own, with its quota's image if it had one; a disk's files are copied
            // into a plain layer.
            DiskBytes = settings.Root == DomainRoot.Virtiofs ? domain.Limits.DiskBytes : null,
        };
        if (settings.Root != DomainRoot.Virtiofs && before?.DiskBytes is { } lostQuota)
            notes.Add($"its disk quota as a vserver ({ByteSize.FormatExact(lostQuota)}) is not restored: the files come back in a writable layer on the host's disk");
        if (GuestConfigValidator.LimitsError(limits, _hostCpus) is { } error) throw FleetException.Invalid($"cannot demote '{domain.Name}': {error}");
        var rootText = settings.Root switch
        {
            DomainRoot.Virtiofs => "its files as the domain left them, in place (nothing copied)",
            DomainRoot.Ext4 => $"the files of its ext4 image ({paths.Ext4Disk}) copied into a writable layer over image {domain.Image}",
            _ => $"the files of its disk ({paths.Disk}) copied into a writable layer over image {domain.Image}",
        };
        var mac = domain.Network.Mac ?? GuestAllocator.Mac(_options.StateRoot, domain.Name);
        var vserver = domain with
        {
            Kind = GuestKind.Vserver,
            Domain = null,
            Limits = limits,
            Security = security,
            Network = domain.Network with { Mac = mac },
            History = [.. domain.History, new GuestEvent(DateTimeOffset.UtcNow, "demoted", $"demoted from domain (kernel {settings.Kernel}, root {settings.Root.ToString().ToLowerInvariant()})")],
        };
        var plan = new ConversionPlan(domain.Name, "domain", "vserver",
        [
            ("memory", $"limit {limits.MemoryBytes >> 20}M{(limits.MemoryMinBytes is { } min ? $", guarantee {min >> 20}M" : "")}"),
            ("cpus", limits.Cpus!.Value.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)),
            ("pids", limits.Pids?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "no limit"),
            ("root", rootText),
            ("address", $"{domain.Network.Ipv4} (MAC {mac})"),
            ("restart", RestartPolicies.Format(domain.Restart)),
        ], notes);
        return (vserver, plan);
    }

    /// <summary>Removes a guest's vserver layers (upper and work, renamed away first, or a disk quota's image).</summary>
    private void DiscardLayers(GuestPaths paths) => _conversion.DiscardLayers(paths);

    private static string Reason(Exception e) => e.Message.TrimEnd('.');
}
