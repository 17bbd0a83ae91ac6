using System.Globalization;

namespace HybridHypervisor.Domains;

/// <summary>Everything that decides one run of a domain's QEMU. Sockets and the pid file live in the run directory,
/// the disk and the console log in the guest's state directory.</summary>
public sealed record DomainLaunch
{
    public required string Name { get; init; }
    public required AcceleratorKind Accelerator { get; init; }
    public required string Vmlinux { get; init; }
    public required string Initrd { get; init; }
    public required int Vcpus { get; init; }
    public required long MemoryBytes { get; init; }
    /// <summary>The root disk (qcow2 for <see cref="Model.DomainRoot.Overlay"/>, raw for Ext4); unused for Virtiofs.</summary>
    public required string Disk { get; init; }
    public Model.DomainRoot Root { get; init; } = Model.DomainRoot.Overlay;
    /// <summary>Overlay roots: the image's base disk, given to QEMU as the overlay's backing file so that the path written
    /// in the qcow2's header (a file under the state root anyone with write access there could change) is never opened.</summary>
    public string? Backing { get; init; }
    /// <summary>Virtiofs roots: virtiofsd's vhost-user socket.</summary>
    public string? VirtiofsSocket { get; init; }
    /// <summary>The guest's init and its arguments (the initramfs runs /sbin/init when null).</summary>
    public IReadOnlyList<string>? Init { get; init; }
    public required string Tap { get; init; }
    public required string Mac { get; init; }
    /// <summary>A.B.C.D/PREFIX, set up by the initramfs before the guest's init runs; /32 for an address outside the
    /// guest subnet, whose gateway the initramfs then routes on-link (<see cref="Vserver.Isolation.Network.GuestAddress"/>).</summary>
    public required string Address { get; init; }
    public required string Gateway { get; init; }
    /// <summary>What the initramfs writes as the guest's /etc/resolv.conf; null leaves the guest's own.</summary>
    public Vserver.Isolation.Network.ResolvConf? Resolv { get; init; }
    public required string QmpSocket { get; init; }
    public required string ConsoleSocket { get; init; }
    public required string ConsoleLog { get; init; }
    public required string AgentSocket { get; init; }
    public required string PidFile { get; init; }
    /// <summary>TCG on microvm: the host's TSC rate, or about a third of boots hang calibrating it.</summary>
    public long? TscKhz { get; init; }
    /// <summary>Restore: where QEMU reads the saved state from (-incoming); it then waits, paused, for "cont".</summary>
    public string? Incoming { get; init; }
    /// <summary>Boot held: the initramfs waits on this port's "go" before the network and the root (see <see cref="DomainHold"/>).</summary>
    public string? HoldSocket { get; init; }
}

/// <summary>
/// The QEMU command line of a domain: a microvm (no PCI, no firmware; the kernel's PVH entry boots straight from
/// -kernel), virtio-mmio devices for the root disk, network, guest agent port and balloon, the serial console on a
/// socket whose output QEMU also appends to the console log, and QMP on a socket for the agent.
/// </summary>
public static class QemuCommand
{
    public static string KernelCommandLine(DomainLaunch l)
    {
        var parts = new List<string> { "console=ttyS0" };
        parts.AddRange(l.Root == Model.DomainRoot.Virtiofs ? [$"root={PromotionRoot.Tag}", "rootfstype=virtiofs"] : ["root=/dev/vda"]);
        parts.AddRange(["rw", "panic=-1"]);
        if (l.Accelerator == AcceleratorKind.Tcg && l.TscKhz is { } khz) parts.Add($"tsc_early_khz={khz.ToString(CultureInfo.InvariantCulture)}");
        parts.Add($"vserver.hostname={l.Name}");
        parts.Add($"vserver.ip={l.Address}");
        parts.Add($"vserver.gw={l.Gateway}");
        if (l.Resolv is { } resolv) parts.AddRange(ResolvParameters(resolv));
        if (l.HoldSocket is not null) parts.Add("vserver.hold");
        if (l.Init is { Count: > 0 } init)
        {
            // The kernel hands the words after "--" to the initramfs' /init, which passes them on to init=.
            parts.Add($"init={init[0]}");
            if (init.Count > 1) parts.Add("--");
            parts.AddRange(init.Skip(1));
        }
        return string.Join(' ', parts);
    }

    /// <summary>
    /// vserver.dns=A,B (given even when empty: it is what says "write the file") and vserver.search=D1,D2 (the search
    /// line's words); the initramfs writes them as <see cref="Vserver.Isolation.Network.ResolvConf.Render"/> does. The
    /// command line splits words at spaces and has no escapes, so a word that cannot travel is refused here.
    /// </summary>
    public static IReadOnlyList<string> ResolvParameters(Vserver.Isolation.Network.ResolvConf resolv)
    {
        var servers = resolv.Servers.Select(s => s.ToString()).ToList();
        var search = resolv.Search?.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries) ?? [];
        if (servers.Concat(search).FirstOrDefault(w => w.Any(c => c is ',' or '"' || char.IsWhiteSpace(c) || char.IsControl(c))) is { } bad)
            throw new ArgumentException($"'{bad}' cannot be passed to a domain's initramfs for resolv.conf (no commas, quotes, spaces or control characters)");
        return search.Length > 0
            ? [$"vserver.dns={string.Join(',', servers)}", $"vserver.search={string.Join(',', search)}"]
            : [$"vserver.dns={string.Join(',', servers)}"];
    }

    /// <summary>Why a command cannot be a domain's init (the kernel command line splits words at spaces and has no
    /// escapes), or null if it can.</summary>
    public static string? InitError(IReadOnlyList<string> command)
    {
        var bad = command.FirstOrDefault(w => w.Length == 0 || w.Any(c => char.IsWhiteSpace(c) || c is '"' || char.IsControl(c)));
        return bad is null ? null : $"the command word '{bad}' cannot be passed on a kernel command line (no spaces, quotes or empty words)";
    }

    public static IReadOnlyList<string> Arguments(DomainLaunch l)
    {
        var kvm = l.Accelerator == AcceleratorKind.Kvm;
        var shared = l.Root == Model.DomainRoot.Virtiofs;
        var memory = $"{l.MemoryBytes >> 20}M";
        var args = new List<string>
        {
            "-name", $"{l.Name},process=vserver-{l.Name}",
            // vhost-user devices need guest RAM that virtiofsd can map: a shared memfd.
            "-M", shared ? "microvm,acpi=on,memory-backend=mem" : "microvm,acpi=on",
            "-accel", kvm ? "kvm" : "tcg",
            "-cpu", kvm ? "host" : "max",
            "-m", memory,
            "-smp", l.Vcpus.ToString(CultureInfo.InvariantCulture),
            "-nodefaults", "-no-user-config", "-display", "none",
            // A reboot inside ends QEMU; the agent sees the reset and starts the domain again (as xl's on_reboot).
            "-no-reboot",
            "-kernel", l.Vmlinux, "-initrd", l.Initrd, "-append", KernelCommandLine(l),
            "-netdev", $"tap,id=net0,ifname={l.Tap},script=no,downscript=no",
            "-device", $"virtio-net-device,netdev=net0,mac={l.Mac}",
            "-chardev", $"socket,id=console,path={Escape(l.ConsoleSocket)},server=on,wait=off,logfile={Escape(l.ConsoleLog)},logappend=on",
            "-serial", "chardev:console",
            "-chardev", $"socket,id=agent,path={Escape(l.AgentSocket)},server=on,wait=off",
            "-device", "virtio-serial-device",
            "-device", $"virtserialport,chardev=agent,name={GuestAgent.GuestAgentProtocol.PortName}",
            "-device", "virtio-balloon-device",
            "-device", "virtio-rng-device",
            "-qmp", $"unix:{Escape(l.QmpSocket)},server=on,wait=off",
            "-pidfile", l.PidFile,
        };
        if (shared)
            args.AddRange([
                "-object", $"memory-backend-memfd,id=mem,size={memory},share=on",
                // microvm's virtio-mmio transport defaults to legacy mode, which vhost-user-fs does not support.
                "-global", "virtio-mmio.force-legacy=false",
                "-chardev", $"socket,id=rootfs,path={Escape(l.VirtiofsSocket!)}",
                "-device", $"vhost-user-fs-device,chardev=rootfs,tag={PromotionRoot.Tag}",
            ]);
        else
            args.AddRange([
                "-drive", $"id=root,file={Escape(l.Disk)},format={(l.Root == Model.DomainRoot.Ext4 ? "raw" : "qcow2")},if=none,discard=unmap" +
                    (l.Backing is { } backing ? $",backing.driver=raw,backing.file.filename={Escape(backing)}" : ""),
                "-device", "virtio-blk-device,drive=root",
            ]);
        if (l.HoldSocket is { } hold)
            args.AddRange([
                "-chardev", $"socket,id=hold,path={Escape(hold)},server=on,wait=off",
                "-device", $"virtserialport,chardev=hold,name={DomainHold.PortName}",
            ]);
        if (l.Incoming is { } incoming) args.AddRange(["-incoming", incoming]);
        return args;
    }

    /// <summary>QEMU option values are comma-separated: a comma inside a value is written twice.</summary>
    public static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);
}
