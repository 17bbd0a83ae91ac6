using HybridHypervisor.Model;
using Vserver.Isolation.Guests;

namespace HybridHypervisor.Guests;

/// <summary>
/// What a promotion or demotion does on the host beyond a guest's start and stop: the root a vserver and its domain
/// share or copy, the address moving between a vserver's network namespace and a domain's tap, the domain's boot during
/// the cut-over. The fleet's plans of steps (Fleet.Promotion.cs) call only this and the two <see cref="IGuestDriver"/>s,
/// so a unit test runs them, and their undo, with stand-ins. The host's is <see cref="Domains.ConversionDriver"/>.
/// Every method is called under the guest's lock.
/// </summary>
public interface IConversionDriver
{
    /// <summary>Why a domain cannot have a shared (virtiofs) root on this host, or null when it can.</summary>
    string? SharedRootRefusal();

    /// <summary>Refuses (before anything is touched) when no domain can boot on this host with <paramref name="domain"/>'s kernel.</summary>
    Task CheckBootAsync(GuestConfig domain);

    /// <summary>Shares the running vserver's root in place for its domain (the tree its init sees, and virtiofsd).</summary>
    void ShareRoot(GuestConfig vserver, GuestPaths paths, IGuestRun vserverRun);

    /// <summary>Undoes <see cref="ShareRoot"/> (and the tree a copy was made from); the vserver's own writable layer stays
    /// mounted when <paramref name="keepLayer"/> (a vserver still serving, a copy's source still to be discarded).</summary>
    void ReleaseSharedRoot(GuestPaths paths, bool keepLayer);

    /// <summary>Copies a vserver's files into an ext4 image of at least <paramref name="sizeBytes"/>; returns its size.</summary>
    long CopyRootToImage(GuestConfig vserver, GuestPaths paths, long sizeBytes);

    /// <summary>Copies a domain's disk's files into the vserver's writable layer.</summary>
    Task CopyOutOfDiskAsync(GuestConfig vserver, DomainSettings settings, GuestPaths paths);

    /// <summary>Removes a guest's vserver layers (upper and work, or a disk quota's image).</summary>
    void DiscardLayers(GuestPaths paths);

    /// <summary>The vserver's end of the address: its network namespace and veth (made again when it exists already).</summary>
    void EnsureVserverNetwork(GuestConfig vserver, GuestPaths paths);

    void RemoveVserverNetwork(GuestPaths paths);

    /// <summary>Removes the vserver's cgroup (a demotion being undone made it).</summary>
    void ReleaseVserverCgroup(GuestPaths paths);

    /// <summary>The domain's end of the address: its tap on the bridge.</summary>
    void EnsureTap(GuestPaths paths);

    void RemoveTap(GuestPaths paths);

    /// <summary>Boots the domain; <paramref name="held"/>: its initramfs waits on the hold port before it takes the
    /// address and the root (see <see cref="Domains.DomainHold"/>).</summary>
    Task<IGuestRun> BootDomainAsync(GuestConfig domain, GuestPaths paths, bool held, CancellationToken ct);

    /// <summary>The host's end of a held boot.</summary>
    Task<IDomainHold> ConnectHoldAsync(GuestPaths paths, CancellationToken ct);

    /// <summary>Returns once the booted domain's guest agent answers; refuses with what its console said otherwise.</summary>
    Task WaitUpAsync(IGuestRun domain, GuestPaths paths, TimeSpan timeout, CancellationToken ct);

    /// <summary>Sets a booted domain's balloon to its config's target (it boots with all of its memory).</summary>
    Task SetBalloonTargetAsync(GuestConfig domain, IGuestRun run);

    /// <summary>Ends a conversion's domain: the run this agent booted, or (null, after an agent's death) the QEMU its pid
    /// file names; its pid file goes.</summary>
    Task KillDomainAsync(IGuestRun? domain, GuestPaths paths);

    /// <summary>What a domain leaves on the host besides its disks (a QEMU, a shared root, its tap).</summary>
    void RemoveDomainLeftovers(GuestPaths paths);
}

/// <summary>The host's end of a held boot: wait until the domain's kernel is up, then let it go on.</summary>
public interface IDomainHold : IAsyncDisposable
{
    Task WaitReadyAsync(TimeSpan timeout, CancellationToken ct);

    Task ReleaseAsync(CancellationToken ct);
}
