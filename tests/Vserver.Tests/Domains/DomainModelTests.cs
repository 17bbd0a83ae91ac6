using HybridHypervisor;
using HybridHypervisor.Domains;
using HybridHypervisor.Model;
using Shouldly;
using System.Net;
using Vserver.Api;
using Vserver.Isolation.Images;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Domains;

public sealed class DomainModelTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsdomain-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static DomainLaunch Launch(AcceleratorKind accel, long? tsc = 2445432) => new()
    {
        Name = "web1",
        Accelerator = accel,
        Vmlinux = "/k/vmlinux",
        Initrd = "/k/initrd.img",
        Vcpus = 2,
        MemoryBytes = 256L << 20,
        Disk = "/state/guests/web1/disk.qcow2",
        Tap = "vt0123456789a",
        Mac = "52:54:00:aa:bb:cc",
        Address = "10.88.0.5/16",
        Gateway = "10.88.0.1",
        QmpSocket = "/run/g/web1/qmp.sock",
        ConsoleSocket = "/run/g/web1/console.sock",
        ConsoleLog = "/state/guests/web1/console.log",
        AgentSocket = "/run/g/web1/agent.sock",
        PidFile = "/run/g/web1/pid",
        TscKhz = tsc,
    };

    private static string ValueAfter(IReadOnlyList<string> args, string option) => args[args.ToList().IndexOf(option) + 1];

    [Fact]
    public void Tcg_gets_the_hosts_tsc_rate_and_kvm_does_not()
    {
        var tcg = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg));
        ValueAfter(tcg, "-accel").ShouldBe("tcg");
        ValueAfter(tcg, "-cpu").ShouldBe("max");
        ValueAfter(tcg, "-append").ShouldContain("tsc_early_khz=2445432");
        var kvm = QemuCommand.Arguments(Launch(AcceleratorKind.Kvm));
        ValueAfter(kvm, "-accel").ShouldBe("kvm");
        ValueAfter(kvm, "-cpu").ShouldBe("host");
        ValueAfter(kvm, "-append").ShouldNotContain("tsc_early_khz");
    }

    [Fact]
    public void The_command_line_carries_the_guests_identity_devices_and_sockets()
    {
        var args = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg));
        ValueAfter(args, "-m").ShouldBe("256M");
        ValueAfter(args, "-smp").ShouldBe("2");
        var append = ValueAfter(args, "-append");
        append.ShouldContain("root=/dev/vda");
        append.ShouldContain("vserver.ip=10.88.0.5/16");
        append.ShouldContain("vserver.gw=10.88.0.1");
        append.ShouldContain("vserver.hostname=web1");
        args.ShouldContain("virtio-net-device,netdev=net0,mac=52:54:00:aa:bb:cc");
        args.ShouldContain($"virtserialport,chardev=agent,name={HybridHypervisor.Domains.GuestAgent.GuestAgentProtocol.PortName}");
        args.ShouldContain("-no-reboot");
        ValueAfter(args, "-qmp").ShouldBe("unix:/run/g/web1/qmp.sock,server=on,wait=off");
        args.ShouldNotContain("-incoming");
        var restored = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg) with { Incoming = "exec:cat /x" });
        ValueAfter(restored, "-incoming").ShouldBe("exec:cat /x");
    }

    [Fact]
    public void An_overlays_backing_file_is_the_images_base_named_on_the_command_line_not_the_path_in_its_header()
    {
        var args = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg) with { Backing = "/state/images/busybox/disk.ext4" });
        ValueAfter(args, "-drive").ShouldEndWith(",backing.driver=raw,backing.file.filename=/state/images/busybox/disk.ext4");
        ValueAfter(QemuCommand.Arguments(Launch(AcceleratorKind.Tcg)), "-drive").ShouldNotContain("backing");
    }

    [Fact]
    public void Commas_in_paths_are_doubled_for_qemus_option_syntax()
    {
        var args = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg) with { Disk = "/a,b/disk.qcow2" });
        ValueAfter(args, "-drive").ShouldStartWith("id=root,file=/a,,b/disk.qcow2,format=qcow2");
    }

    [Fact]
    public void A_virtiofs_root_gets_shared_memfd_memory_modern_virtio_mmio_and_no_disk()
    {
        var args = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg) with
        {
            Root = DomainRoot.Virtiofs, Disk = "", VirtiofsSocket = "/run/g/web1/virtiofs/sock",
        });
        ValueAfter(args, "-M").ShouldBe("microvm,acpi=on,memory-backend=mem");
        ValueAfter(args, "-object").ShouldBe("memory-backend-memfd,id=mem,size=256M,share=on");
        ValueAfter(args, "-global").ShouldBe("virtio-mmio.force-legacy=false");
        args.ShouldContain("socket,id=rootfs,path=/run/g/web1/virtiofs/sock");
        args.ShouldContain("vhost-user-fs-device,chardev=rootfs,tag=root");
        args.ShouldNotContain("-drive");
        var append = ValueAfter(args, "-append");
        append.ShouldContain("root=root rootfstype=virtiofs rw");
        append.ShouldNotContain("/dev/vda");
    }

    [Fact]
    public void A_held_boot_gets_its_own_serial_port_and_says_so_on_the_kernel_command_line()
    {
        var plain = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg));
        plain.ShouldNotContain($"virtserialport,chardev=hold,name={DomainHold.PortName}");
        ValueAfter(plain, "-append").ShouldNotContain("vserver.hold");
        var held = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg) with { HoldSocket = "/run/g/web1/hold.sock" });
        held.ShouldContain("socket,id=hold,path=/run/g/web1/hold.sock,server=on,wait=off");
        held.ShouldContain($"virtserialport,chardev=hold,name={DomainHold.PortName}");
        // On the agent's virtio-serial bus: one bus, two named ports.
        held.Count(a => a == "virtio-serial-device").ShouldBe(1);
        ValueAfter(held, "-append").Split(' ').ShouldContain("vserver.hold");
    }

    [Fact]
    public void An_ext4_root_is_a_raw_disk_and_a_command_becomes_init_with_its_arguments_after_the_separator()
    {
        var args = QemuCommand.Arguments(Launch(AcceleratorKind.Tcg) with
        {
            Root = DomainRoot.Ext4, Disk = "/state/guests/web1/disk.ext4", Init = ["/bin/sleep", "infinity"],
        });
        ValueAfter(args, "-drive").ShouldBe("id=root,file=/state/guests/web1/disk.ext4,format=raw,if=none,discard=unmap");
        ValueAfter(args, "-append").ShouldEndWith(" init=/bin/sleep -- infinity");
        QemuCommand.InitError(["/bin/sleep", "infinity"]).ShouldBeNull();
        QemuCommand.InitError(["/bin/sh", "-c", "echo hi"])!.ShouldContain("'echo hi'");
        QemuCommand.InitError(["/bin/x", ""])!.ShouldContain("no spaces, quotes or empty words");
    }

    [Fact]
    public void The_tsc_rate_comes_from_the_kernel_log_or_cpuinfo()
    {
        HostTsc.FromKernelLog("[0.0] tsc: Detected 2445.432 MHz processor\n[1.2] tsc: Refined TSC clocksource calibration: 2445.410 MHz\n")
            .ShouldBe(2445410);
        HostTsc.FromKernelLog("[0.0] tsc: Detected 2445.432 MHz processor\n").ShouldBe(2445432);
        HostTsc.FromKernelLog("nothing here").ShouldBeNull();
        HostTsc.FromCpuinfo("processor\t: 0\ncpu MHz\t\t: 2445.432\n").ShouldBe(2445432);
    }

    [Theory]
    [InlineData(0, 256, "invalid vcpus 0")]
    [InlineData(3, 256, "invalid vcpus 3: give 1 to 2")]
    [InlineData(1, 32, "too small for a domain")]
    [InlineData(1, 1L << 30, "more than this host has")]
    public void Domain_settings_outside_the_host_are_refused(int vcpus, long memoryMiB, string message)
    {
        var domain = new DomainSettings { Vcpus = vcpus, MaxMemoryBytes = memoryMiB << 20 };
        GuestConfigValidator.DomainError(domain, null, hostCpus: 2, hostMemoryBytes: 24L << 30).ShouldNotBeNull().Message.ShouldContain(message);
    }

    [Fact]
    public void A_balloon_target_must_lie_within_the_maximum()
    {
        var domain = new DomainSettings { MaxMemoryBytes = 256L << 20 };
        GuestConfigValidator.DomainError(domain, 192L << 20, 2, 24L << 30).ShouldBeNull();
        GuestConfigValidator.DomainError(domain, 512L << 20, 2, 24L << 30).ShouldNotBeNull().Message.ShouldContain("maximum of 256M");
        GuestConfigValidator.DomainError(domain with { Kernel = "../etc" }, null, 2, 24L << 30).ShouldNotBeNull().Message.ShouldContain("kernel");
    }

    [Fact]
    public void A_domain_config_without_its_domain_section_does_not_load()
    {
        var subnet = Vserver.Isolation.Network.Ipv4Subnet.Parse("10.88.0.0/16");
        var config = new GuestConfig { Name = "web1", Kind = GuestKind.Domain, Image = "busybox", Network = new GuestNetworkConfig { Ipv4 = "10.88.0.5" } };
        GuestConfigValidator.Validate(config, subnet, 2).ShouldNotBeNull().ShouldContain("needs its \"domain\" section");
        GuestConfigValidator.Validate(config with { Domain = new DomainSettings() }, subnet, 2).ShouldBeNull();
    }

    private string WriteSave(byte[] migration, byte[] disk, string? name = null)
    {
        var path = Path.Combine(_dir, name ?? "x.state");
        var diskFile = Path.Combine(_dir, "disk.qcow2");
        File.WriteAllBytes(diskFile, disk);
        var header = new SaveHeader
        {
            Config = new GuestConfig { Name = "web1", Kind = GuestKind.Domain, Image = "busybox", Domain = new DomainSettings() },
            Accelerator = AcceleratorKind.Tcg,
        };
        var offset = SaveFile.WriteHeader(path, header);
        File.AppendAllBytes(path, migration);
        SaveFile.Finish(path, offset, diskFile);
        return path;
    }

    [Fact]
    public void A_save_file_round_trips_its_header_stream_and_disk()
    {
        var path = WriteSave("QEVMstate"u8.ToArray(), "QFI\xfbdisk"u8.ToArray());
        var layout = SaveFile.Read(path);
        layout.Header.Config.Name.ShouldBe("web1");
        layout.Header.Accelerator.ShouldBe(AcceleratorKind.Tcg);
        layout.MigrationLength.ShouldBe(9);
        var bytes = File.ReadAllBytes(path);
        bytes.AsSpan((int)layout.MigrationOffset, 9).ToArray().ShouldBe("QEVMstate"u8.ToArray());
        var extracted = Path.Combine(_dir, "out.qcow2");
        SaveFile.ExtractDisk(path, layout, extracted);
        File.ReadAllBytes(extracted).ShouldBe("QFI\xfbdisk"u8.ToArray());
        SaveFile.IncomingUri(path, layout).ShouldBe($"exec:tail -c +{layout.MigrationOffset + 1} '{path}' | head -c 9");
    }

    [Fact]
    public void Files_that_are_not_whole_save_files_are_refused_by_name()
    {
        var junk = Path.Combine(_dir, "junk");
        File.WriteAllText(junk, "hello\n");
        var notOne = Should.Throw<FleetException>(() => SaveFile.Read(junk));
        notOne.Message.ShouldBe($"{junk} is not a vserver save file (it does not start with \"VSERVER-SAVE 1\")");
        notOne.Code.ShouldBe(ErrorCodes.NotASaveFile);
        notOne.Fields["file"].ShouldBe(junk);

        var whole = File.ReadAllBytes(WriteSave("QEVM"u8.ToArray(), "disk"u8.ToArray()));
        var cut = Path.Combine(_dir, "cut");
        File.WriteAllBytes(cut, whole[..^10]);
        Should.Throw<FleetException>(() => SaveFile.Read(cut)).Message.ShouldContain("is incomplete");

        var grown = Path.Combine(_dir, "grown");
        File.WriteAllBytes(grown, [.. whole[..^SaveFile.FooterLength], 0, .. whole[^SaveFile.FooterLength..]]);
        Should.Throw<FleetException>(() => SaveFile.Read(grown)).Message.ShouldContain("do not add up");

        Should.Throw<FleetException>(() => SaveFile.Read(Path.Combine(_dir, "none"))).Kind.ShouldBe(FleetError.NotFound);
    }

    [Fact]
    public void A_kernel_is_found_only_when_both_boot_files_are_there()
    {
        var store = new KernelStore(Path.Combine(_dir, "kernels"), Path.Combine(_dir, "recipes"));
        store.List().ShouldBeEmpty();
        store.Missing("default").ShouldBe("unknown kernel 'default'; built kernels: none");
        var missing = store.MissingError("default");
        missing.Code.ShouldBe(ErrorCodes.KernelMissing);
        missing.Fields["kernel"].ShouldBe("default");
        missing.Fields["built"].ShouldBeEmpty();
        var dir = Directory.CreateDirectory(Path.Combine(_dir, "kernels", "default")).FullName;
        File.WriteAllText(Path.Combine(dir, "vmlinux"), "elf");
        store.Find("default").ShouldBeNull();
        File.WriteAllText(Path.Combine(dir, "initrd.img"), "cpio");
        File.WriteAllText(Path.Combine(dir, "version"), "6.1.0-56-cloud-amd64\n");
        var kernel = store.Find("default").ShouldNotBeNull();
        kernel.Version.ShouldBe("6.1.0-56-cloud-amd64");
        kernel.Vmlinux.ShouldBe(Path.Combine(dir, "vmlinux"));
        store.Find("../default").ShouldBeNull();
        Should.Throw<FleetException>(() => store.Build("Bad_Name")).Kind.ShouldBe(FleetError.Invalid);
    }

    [Fact]
    public void Resolv_conf_goes_to_the_initramfs_as_vserver_dns_and_vserver_search_and_nothing_without_it()
    {
        var append = QemuCommand.KernelCommandLine(Launch(AcceleratorKind.Kvm) with
        {
            Resolv = new ResolvConf([IPAddress.Parse("10.88.0.1"), IPAddress.Parse("2001:db8::53")], "example.test"),
        }).Split(' ');
        append.ShouldContain("vserver.dns=10.88.0.1,2001:db8::53");
        append.ShouldContain("vserver.search=example.test");

        var plain = QemuCommand.KernelCommandLine(Launch(AcceleratorKind.Kvm));
        plain.ShouldNotContain("vserver.dns");
        plain.ShouldNotContain("vserver.search");
        // No servers is still a file to write: vserver.dns is there, empty; no search, no vserver.search.
        var empty = QemuCommand.KernelCommandLine(Launch(AcceleratorKind.Kvm) with { Resolv = new ResolvConf([], null) }).Split(' ');
        empty.ShouldContain("vserver.dns=");
        empty.ShouldNotContain(w => w.StartsWith("vserver.search", StringComparison.Ordinal));
    }

    [Fact]
    public void Several_search_domains_travel_comma_separated_and_a_word_the_command_line_cannot_carry_is_refused()
    {
        QemuCommand.ResolvParameters(new ResolvConf([IPAddress.Parse("10.0.0.1")], "a.example b.example"))
            .ShouldBe(["vserver.dns=10.0.0.1", "vserver.search=a.example,b.example"]);
        Should.Throw<ArgumentException>(() => QemuCommand.ResolvParameters(new ResolvConf([], "a,b.example")))
            .Message.ShouldContain("'a,b.example'");
        Should.Throw<ArgumentException>(() => QemuCommand.ResolvParameters(new ResolvConf([], "x\"y")));
    }

    /// <summary>A driver over a temp state root with a kernel "built" there: enough for <see cref="DomainDriver.LaunchFor"/>.</summary>
    private DomainDriver Driver(Func<GuestConfig, ResolvConf?> resolvFor, string features = "hold dns routed")
    {
        var options = new FleetOptions
        {
            StateRoot = Path.Combine(_dir, "state"), RunRoot = Path.Combine(_dir, "run"), BridgeName = "vsx",
            Subnet = Ipv4Subnet.Parse("10.88.0.0/16"), CgroupParent = "x", VsinitPath = "/nonexistent", RecipesRoot = _dir,
        };
        var kernel = Directory.CreateDirectory(Path.Combine(options.KernelsRoot, "default")).FullName;
        File.WriteAllText(Path.Combine(kernel, "vmlinux"), "elf");
        File.WriteAllText(Path.Combine(kernel, "initrd.img"), "cpio");
        File.WriteAllText(Path.Combine(kernel, "features"), features + "\n");
        return new DomainDriver(options, new HostBridge("vsx", options.Subnet), new ImageStore(options.ImagesRoot, _dir),
            new KernelStore(options.KernelsRoot, _dir), resolvFor, _ => { });
    }

    private static GuestConfig Domain(string ipv4) => new()
    {
        Name = "web1", Kind = GuestKind.Domain, Image = "busybox", Domain = new DomainSettings(),
        Network = new GuestNetworkConfig { Ipv4 = ipv4, Mac = "52:54:00:aa:bb:cc" },
    };

    private static readonly GuestPaths Paths = new("/state/guests/web1", "/run/guests/web1", "vv0", "x/web1");

    [Fact]
    public void A_domain_inside_the_subnet_gets_its_prefix_and_one_outside_it_a_32_with_the_same_gateway()
    {
        var driver = Driver(_ => null);
        var kvm = new AcceleratorChoice(AcceleratorKind.Kvm, "test", "boot");

        var inside = driver.LaunchFor(Domain("10.88.0.5"), Paths, kvm);
        (inside.Address, inside.Gateway).ShouldBe(("10.88.0.5/16", "10.88.0.1"));
        var routed = driver.LaunchFor(Domain("198.51.100.7"), Paths, kvm);
        (routed.Address, routed.Gateway).ShouldBe(("198.51.100.7/32", "10.88.0.1"));
        QemuCommand.KernelCommandLine(routed).Split(' ').ShouldContain("vserver.ip=198.51.100.7/32");
        routed.Resolv.ShouldBeNull();

        // A kernel built before routed addresses would boot the domain without its network: refused, saying what to do.
        Should.Throw<FleetException>(() => Driver(_ => null, features: "hold dns").LaunchFor(Domain("198.51.100.7"), Paths, kvm))
            .Message.ShouldBe("kernel 'default' was built before routed addresses existed and cannot give domain 'web1' its address 198.51.100.7; rebuild the kernel");
    }

    [Fact]
    public void The_domains_resolv_conf_is_the_fleets_answer_for_that_guest()
    {
        var asked = new List<string>();
        var driver = Driver(g =>
        {
            asked.Add(g.Name);
            return new ResolvConf([IPAddress.Parse("10.88.0.1")], "example.test");
        });

        var launch = driver.LaunchFor(Domain("10.88.0.5"), Paths, new AcceleratorChoice(AcceleratorKind.Kvm, "test", "boot"));

        asked.ShouldBe(["web1"]);
        launch.Resolv.ShouldNotBeNull().Render().ShouldBe("# written by vserver at each start; create the guest with --dns none to keep your own\n"
            + "nameserver 10.88.0.1\nsearch example.test\n");
        QemuCommand.KernelCommandLine(launch).Split(' ').ShouldContain("vserver.dns=10.88.0.1");
    }
}
