using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;

namespace HybridHypervisor.Domains;

/// <summary>
/// The host's half of promotion and demotion (see <see cref="IConversionDriver"/>): the shared or copied root
/// (<see cref="PromotionRoot"/>), the vserver's network namespace and cgroup (<see cref="VserverDriver"/>), the domain's
/// tap and QEMU (<see cref="DomainDriver"/>).
/// </summary>
public sealed class ConversionDriver(VserverDriver vservers, DomainDriver domains, Action<string> log) : IConversionDriver
{
    public string? SharedRootRefusal() => File.Exists(PromotionRoot.VirtiofsdProgram)
        ? null
        : $"{PromotionRoot.VirtiofsdProgram} not found: a shared root needs it (Debian: apt-get install qemu-system-common, or run make deps); a copied root does not";

    public Task CheckBootAsync(GuestConfig domain) => domains.RequireAcceleratorAsync(domain.Domain!.Kernel);

    public void ShareRoot(GuestConfig vserver, GuestPaths paths, IGuestRun vserverRun) =>
        domains.Roots.Grab(vserver, paths, ((RunningVserver)vserverRun).InitPid);

    public void ReleaseSharedRoot(GuestPaths paths, bool keepLayer)
    {
        DomainDriver.ReleaseRoot(paths);
        if (!keepLayer) WritableLayer.Release(paths, log);
    }

    public long CopyRootToImage(GuestConfig vserver, GuestPaths paths, long sizeBytes) => domains.Roots.CopyToExt4(vserver, paths, sizeBytes);

    /// <summary>A raw ext4 image directly, a qcow2 overlay through qemu-storage-daemon's raw export.</summary>
    public async Task CopyOutOfDiskAsync(GuestConfig vserver, DomainSettings settings, GuestPaths paths)
    {
        if (settings.Root == DomainRoot.Ext4)
        {
            await Task.Run(() => domains.Roots.CopyFromDisk(vserver, paths, paths.Ext4Disk));
            return;
        }
        // Writable: a domain powered off by its init leaves ext4's journal to replay, and a read-only device cannot
        // replay it (the kernel refuses the mount; noload would hide the journal's newest writes).
        var basePath = domains.BaseDiskOf(vserver)
            ?? throw FleetException.ImageMissing(vserver.Image, vserver.Name);
        await Task.Run(() => DomainDisk.WithRawExport(paths.Disk, basePath, writable: true, raw => domains.Roots.CopyFromDisk(vserver, paths, raw)));
    }

    public void DiscardLayers(GuestPaths paths) => WritableLayer.Discard(paths, log);

    public void EnsureVserverNetwork(GuestConfig vserver, GuestPaths paths) => vservers.EnsureNetwork(vserver, paths);

    public void RemoveVserverNetwork(GuestPaths paths) => GuestNetwork.Destroy(paths.Netns, paths.HostVeth);

    public void ReleaseVserverCgroup(GuestPaths paths) => vservers.ReleaseCgroup(paths);

    public void EnsureTap(GuestPaths paths) => domains.EnsureTap(paths);

    public void RemoveTap(GuestPaths paths) => DomainTap.Destroy(paths.Tap);

    public async Task<IGuestRun> BootDomainAsync(GuestConfig domain, GuestPaths paths, bool held, CancellationToken ct)
    {
        var accelerator = await domains.RequireAcceleratorAsync(domain.Domain!.Kernel);
        return await domains.LaunchAsync(domain, paths, accelerator, hold: held, ct: ct);
    }

    public async Task<IDomainHold> ConnectHoldAsync(GuestPaths paths, CancellationToken ct) =>
        await DomainHold.ConnectAsync(paths.HoldSocket, ct);

    /// <summary>The domain is up once its guest agent answers: the initramfs has mounted the root and handed over to the
    /// guest's init.</summary>
    public async Task WaitUpAsync(IGuestRun domain, GuestPaths paths, TimeSpan timeout, CancellationToken ct)
    {
        var running = (RunningDomain)domain;
        try
        {
            await running.AgentAsync(timeout, ct);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            var console = File.Exists(paths.Console) ? File.ReadLines(paths.Console).Where(l => l.Contains("ERROR", StringComparison.Ordinal)).LastOrDefault() : null;
            var said = console is null ? "" : $" (console: {console.Trim()})";
            throw new FleetException(FleetError.Failed, running.Ended.IsCompleted
                ? $"QEMU ended: {DomainDriver.LastLines(paths.QemuLog, 2)}{said}".TrimEnd(' ', ':')
                : $"its guest agent did not answer within {timeout.TotalSeconds:0} s{said}", e);
        }
    }

    public Task SetBalloonTargetAsync(GuestConfig domain, IGuestRun run) => domains.SetBalloonTargetAsync(domain, (RunningDomain)run);

    public async Task KillDomainAsync(IGuestRun? domain, GuestPaths paths)
    {
        if (domain is RunningDomain running)
        {
            await running.KillAsync();
            await running.DisposeAsync();
        }
        else
        {
            domains.Teardown(paths);
        }
        File.Delete(paths.PidFile);
    }

    public void RemoveDomainLeftovers(GuestPaths paths) => domains.Teardown(paths);
}
