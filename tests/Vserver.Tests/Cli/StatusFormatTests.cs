using Shouldly;
using Vserver.Api;
using Vserver.Cli.Commands;
using Xunit;

namespace Vserver.Tests.Cli;

public class StatusFormatTests
{
    [Fact]
    public void A_running_guest_shows_every_key_aligned()
    {
        var output = new StringWriter { NewLine = "\n" };
        StatusCommand.Write(new GuestInfo
        {
            Name = "web1",
            Kind = "vserver",
            State = "running",
            Image = "busybox",
            Ipv4 = "10.88.0.2",
            MemoryBytes = 256L << 20,
            MemoryMinBytes = 64L << 20,
            Cpus = 0.5,
            Pids = 200,
            Restart = "on-failure",
            Command = ["/bin/sh", "-c", "httpd -f; sleep 1"],
            InitPid = 4242,
            Created = CliHarness.Now.AddDays(-2),
            StartedAt = CliHarness.Now.AddMinutes(-5),
            LastExit = new ExitInfo { Code = 137, Signal = 9, At = CliHarness.Now.AddMinutes(-6), Description = "killed by SIGKILL (out of memory)" },
            RestartCount = 1,
            HostIdBase = 1065536,
            HostIdCount = 65536,
            AllowSyscalls = ["keyctl"],
            Usage = new GuestUsage { MemoryBytes = 12L << 20, MemoryPeakBytes = 20L << 20, Processes = 3, CpuSeconds = 1.234, OomKills = 1 },
            DiskBytes = 64L << 20,
            DiskUsedBytes = 1258291,
            DiskFreeBytes = 55L << 20,
        }, new FixedClock(CliHarness.Now), output);

        output.ToString().ShouldBe("""
            name:         web1
            type:         vserver
            state:        running
            image:        busybox
            ipv4:         10.88.0.2
            dns:          the host's resolver on the bridge (names of guests: NAME.<suffix>)
            memory limit: 256M
            memory min:   64M (guaranteed: soft limit)
            cpus:         0.5
            pids limit:   200
            restart:      on-failure
            autostart:    no
            privileged:   no
            host ids:     1065536-1131071 (0-65535 inside)
            syscalls:     default filter, also allowed: keyctl
            command:      /bin/sh -c 'httpd -f; sleep 1'
            disk:         1.2M of 64M used, 55M free
            init pid:     4242
            created:      2025-02-27 12:00:00 +00:00 (2d ago)
            started:      2025-03-01 11:55:00 +00:00 (5m ago)
            last exit:    killed by SIGKILL (out of memory) at 2025-03-01 11:54:00 +00:00 (6m ago)
            restarts:     1
            memory:       12M
            memory peak:  20M
            processes:    3
            cpu seconds:  1.23
            oom kills:    1

            """.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void A_broken_guest_shows_its_problem_and_dashes_for_everything_unset()
    {
        var output = new StringWriter { NewLine = "\n" };
        StatusCommand.Write(new GuestInfo
        {
            Name = "old",
            Kind = "vserver",
            State = "broken",
            Problem = "config.json line 3: unexpected '}'",
        }, new FixedClock(CliHarness.Now), output);

        output.ToString().ShouldBe("""
            name:         old
            type:         vserver
            state:        broken
            problem:      config.json line 3: unexpected '}'
            repair:       fix its files, or remove it with: vsctl destroy --force old
            image:        -
            ipv4:         -
            dns:          -
            memory limit: -
            memory min:   -
            cpus:         -
            pids limit:   -
            restart:      -
            autostart:    -
            privileged:   -
            host ids:     -
            syscalls:     -
            command:      -
            disk:         -
            init pid:     -
            created:      -
            started:      -
            last exit:    -
            restarts:     0
            usage:        -

            """.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void A_domain_shows_its_machine_and_no_vserver_only_lines()
    {
        var output = new StringWriter { NewLine = "\n" };
        StatusCommand.Write(new GuestInfo
        {
            Name = "vm1",
            Kind = "domain",
            State = "running",
            Image = "busybox",
            Ipv4 = "10.88.0.3",
            MemoryBytes = 192L << 20,
            MaxMemoryBytes = 256L << 20,
            MemoryMinBytes = 128L << 20,
            Vcpus = 2,
            Kernel = "default",
            DiskBytes = 2L << 30,
            Root = "overlay",
            Mac = "52:54:00:12:34:56",
            Accelerator = "kvm",
            Restart = "no",
            InitPid = 5151,
            Created = CliHarness.Now.AddHours(-1),
            StartedAt = CliHarness.Now.AddMinutes(-1),
            History = ["2025-03-01 11:30:00Z promoted from vserver: kernel default (6.1.0), 2 vcpus, 256M, root virtiofs"],
        }, new FixedClock(CliHarness.Now), output);

        output.ToString().ShouldBe("""
            name:          vm1
            type:          domain
            state:         running
            accelerator:   kvm
            kernel:        default
            vcpus:         2
            memory target: 192M
            max memory:    256M
            memory min:    128M (guaranteed: balloon floor)
            root:          overlay (qcow2 over its image)
            disk:          2G
            image:         busybox
            ipv4:          10.88.0.3
            dns:           the host's resolver on the bridge (names of guests: NAME.<suffix>)
            mac:           52:54:00:12:34:56
            restart:       no
            autostart:     no
            qemu pid:      5151
            created:       2025-03-01 11:00:00 +00:00 (1h ago)
            started:       2025-03-01 11:59:00 +00:00 (1m ago)
            last exit:     -
            restarts:      0
            history:       2025-03-01 11:30:00Z promoted from vserver: kernel default (6.1.0), 2 vcpus, 256M, root virtiofs

            """.ReplaceLineEndings("\n"));
    }

    private static readonly HostInfo Host = new()
    {
        Version = "0.1.0",
        CgroupVersion = "2",
        Bridge = "vsbr0",
        Subnet = "10.88.0.0/16",
        StateRoot = "/var/lib/vserver",
        RunRoot = "/run/vserver",
        AgentPid = 77,
        Accelerator = "tcg (emulated: KVM could not run the test guest: QEMU exited 1)",
        Cpus = 4,
        MemoryBytes = 8L << 30,
    };

    [Fact]
    public void Host_info_is_key_value_lines()
    {
        var output = new StringWriter { NewLine = "\n" };
        HostCommand.Write(Host, "/run/vserver/agent.sock", output);
        output.ToString().ShouldBe("""
            version:        0.1.0
            agent pid:      77
            socket:         /run/vserver/agent.sock
            cpus:           4
            memory:         8G
            accelerator:    tcg (emulated: KVM could not run the test guest: QEMU exited 1)
            cgroup version: 2
            bridge:         vsbr0
            subnet:         10.88.0.0/16
            state root:     /var/lib/vserver
            run root:       /run/vserver
            pool:           not reported by this agent

            """.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Host_info_shows_the_guests_way_out_routed_range_and_resolver()
    {
        var output = new StringWriter { NewLine = "\n" };
        HostCommand.Write(Host with
        {
            Nat = true,
            IpForwarding = true,
            Routed = "203.0.113.16/28",
            Uplink = "eth0",
            Resolver = new ResolverInfo { Address = "10.88.0.1", Domain = "vserver", Pid = 4242 },
        }, "/run/vserver/agent.sock", output);
        var text = output.ToString();
        text.ShouldContain("outbound:       NAT: guests reach beyond the host, masqueraded to its addresses (IPv4 forwarding on)\n");
        text.ShouldContain("routed:         203.0.113.16/28 on uplink eth0: guests hold these addresses as their own (vsctl create --ip ADDR)\n");
        text.ShouldContain("resolver:       10.88.0.1:53 (dnsmasq, pid 4242): guests' names under .vserver\n");
        text.ShouldContain("upstream dns:   the host's name servers (/etc/resolv.conf)\n");

        output = new StringWriter { NewLine = "\n" };
        HostCommand.Write(Host with
        {
            Nat = false,
            Resolver = new ResolverInfo { Address = "10.88.0.1", Domain = "vserver", Upstream = ["192.0.2.53"], Problem = "port 53 taken" },
        }, "/run/vserver/agent.sock", output);
        text = output.ToString();
        text.ShouldContain("outbound:       off: guests reach only the host and each other (vsctl host set --nat on)\n");
        text.ShouldContain("routed:         none\n");
        text.ShouldContain("resolver:       10.88.0.1:53 NOT SERVING: port 53 taken\n");
        text.ShouldContain("upstream dns:   192.0.2.53\n");
    }

    [Fact]
    public void Host_info_shows_the_memory_pool()
    {
        var output = new StringWriter { NewLine = "\n" };
        HostCommand.Write(Host with
        {
            MemoryBytes = 16L << 30,
            Pool = new PoolInfo
            {
                CapacityBytes = 14L << 30,
                ReserveBytes = 2L << 30,
                Overcommit = 1.5,
                CommittedBytes = 7L << 29,
                LimitsBytes = 20L << 30,
                LimitsCapBytes = 21L << 30,
                UsedBytes = 6L << 30,
                FreeBytes = -(100L << 20),
                MinFreeBytes = 512L << 20,
                UnderPressure = true,
                Ksm = true,
                KsmSavedBytes = 300L << 20,
            },
        }, "/run/vserver/agent.sock", output);
        output.ToString().ShouldEndWith("""
            run root:       /run/vserver
            pool capacity:  14G (memory - reserve)
            reserve:        2G (kept for the host)
            overcommit:     1.5
            committed:      3.5G of 14G (25%): the guarantees, of the capacity
            limits:         20G of 21G (95%): the limits, of capacity x overcommit
            used:           6G
            free:           -100M (in the pool)
            min free:       512M (less free is pressure)
            pressure:       yes
            ksm:            on, saving 300M

            """.ReplaceLineEndings("\n"));
    }
}
