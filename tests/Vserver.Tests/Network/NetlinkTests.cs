using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using HybridHypervisor.Domains;
using Shouldly;
using Vserver.Isolation.Interop;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Xunit;

namespace Vserver.Tests.Network;

/// <summary>
/// The netlink code against the real kernel (as root): a bridge, vservers' networks in namespaces bound under a temp
/// directory, a domain's tap, each checked with what `ip` and `sysctl` say from the host and inside. Names are
/// vstnl + 8 random hex digits + a letter, the subnet 10.251.X.0/24, so runs in parallel do not meet; everything made is
/// removed in Dispose even when a test fails.
/// </summary>
public sealed partial class NetlinkTests : IDisposable
{
    private readonly string _id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    private readonly string _dir = Directory.CreateTempSubdirectory("vstnl-").FullName;
    private readonly string _prefix = $"10.251.{RandomNumberGenerator.GetInt32(0, 256)}";
    private readonly List<string> _links = [];
    private readonly HostBridge _bridge;

    public NetlinkTests()
    {
        _bridge = new HostBridge(Link("b"), Ipv4Subnet.Parse($"{_prefix}.0/24"));
    }

    public void Dispose()
    {
        foreach (var link in _links.AsEnumerable().Reverse())
            if (Directory.Exists($"/sys/class/net/{link}")) HostProgram.TryRun("ip", ["link", "del", link]);
        foreach (var file in Directory.EnumerateFiles(_dir))
            for (var i = 0; i < 8 && Libc.Umount2(file, Libc.MNT_DETACH) == 0; i++) { }
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A unique interface name, removed in Dispose if it exists then.</summary>
    private string Link(string suffix)
    {
        var name = $"vstnl{_id}{suffix}";
        _links.Add(name);
        return name;
    }

    private string Netns(string name) => Path.Combine(_dir, name);

    private static void RequireRoot()
    {
        if (!Environment.IsPrivilegedProcess) Assert.Skip("needs root");
    }

    private static string Run(string program, params string[] args)
    {
        var (code, stdout, stderr) = HostProgram.TryRun(program, args);
        code.ShouldBe(0, $"{program} {string.Join(' ', args)}: {stderr}");
        return stdout;
    }

    private static string Inside(string netns, params string[] command) => Run("nsenter", [$"--net={netns}", .. command]);

    /// <summary>The flags `ip -o link show` prints between angle brackets.</summary>
    private static string[] Flags(string ipLink) => FlagsPattern().Match(ipLink).Groups[1].Value.Split(',');

    [GeneratedRegex("<([^>]*)>")]
    private static partial Regex FlagsPattern();

    private static string Lines(string text) =>
        string.Join('\n', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Order(StringComparer.Ordinal));

    [Fact]
    public void A_vserver_network_in_the_subnet_is_what_ip_and_sysctl_show_and_the_host_keeps_its_own_sysctls()
    {
        RequireRoot();
        var hostPorts = File.ReadAllText("/proc/sys/net/ipv4/ip_unprivileged_port_start");
        var hostNamespace = new FileInfo("/proc/thread-self/ns/net").LinkTarget;
        var (netns, veth, address) = (Netns("in"), Link("i"), $"{_prefix}.9");
        _bridge.Ensure();

        GuestNetwork.Create("vsinit-unused", netns, veth, _bridge, IPAddress.Parse(address), "52:54:00:0a:0b:0c");

        var host = Run("ip", "-o", "link", "show", "dev", veth);
        host.ShouldContain($" master {_bridge.Name} ");
        Flags(host).ShouldContain("UP");
        var eth0 = Inside(netns, "ip", "-o", "link", "show", "dev", "eth0");
        eth0.ShouldContain(" link/ether 52:54:00:0a:0b:0c ");
        Flags(eth0).ShouldContain("UP");
        Flags(Inside(netns, "ip", "-o", "link", "show", "dev", "lo")).ShouldContain("UP");
        Inside(netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").ShouldContain($" inet {address}/24 scope global eth0");
        Lines(Inside(netns, "ip", "-4", "route", "show")).ShouldBe(Lines(
            $"default via {_prefix}.1 dev eth0\n{_prefix}.0/24 dev eth0 proto kernel scope link src {address}"));
        Inside(netns, "sysctl", "-n", "net.ipv4.ip_unprivileged_port_start").Trim().ShouldBe("0");
        Inside(netns, "sysctl", "-n", "net.ipv4.ping_group_range").Trim().ShouldBe("0\t2147483647");
        Inside(netns, "busybox", "ping", "-c", "1", "-W", "5", $"{_prefix}.1");

        GuestNetwork.ReadMac(netns).ShouldBe("52:54:00:0a:0b:0c");
        GuestNetwork.ReadAddress(netns).ShouldBe(address);
        File.ReadAllText("/proc/sys/net/ipv4/ip_unprivileged_port_start").ShouldBe(hostPorts, "a namespace's sysctl is its own");
        new FileInfo("/proc/thread-self/ns/net").LinkTarget.ShouldBe(hostNamespace, "the caller's thread never moves");
    }

    [Fact]
    public void A_routed_address_is_a_32_with_the_gateway_on_link_and_the_kernels_mac_is_read_back()
    {
        RequireRoot();
        var (netns, veth) = (Netns("routed"), Link("r"));
        var address = $"198.18.{RandomNumberGenerator.GetInt32(0, 256)}.{RandomNumberGenerator.GetInt32(1, 255)}";
        _bridge.Ensure();

        GuestNetwork.Create("vsinit-unused", netns, veth, _bridge, IPAddress.Parse(address));

        Inside(netns, "ip", "-4", "-o", "addr", "show", "dev", "eth0").ShouldContain($" inet {address}/32 scope global eth0");
        Lines(Inside(netns, "ip", "-4", "route", "show")).ShouldBe(Lines(
            $"default via {_prefix}.1 dev eth0 src {address}\n{_prefix}.1 dev eth0 scope link"));
        var mac = Regex.Match(Inside(netns, "ip", "-o", "link", "show", "dev", "eth0"), "link/ether ([0-9a-f:]{17}) ").Groups[1].Value;
        mac.ShouldNotBeEmpty();
        GuestNetwork.ReadMac(netns).ShouldBe(mac);
        GuestNetwork.ReadAddress(netns).ShouldBe(address);
    }

    [Fact]
    public void Destroy_removes_the_veth_and_the_namespace_and_is_safe_twice_and_on_a_half_made_network()
    {
        RequireRoot();
        var (netns, veth) = (Netns("gone"), Link("d"));
        _bridge.Ensure();
        GuestNetwork.Create("vsinit-unused", netns, veth, _bridge, IPAddress.Parse($"{_prefix}.20"));
        GuestNetwork.Exists(netns, veth).ShouldBeTrue();

        GuestNetwork.Destroy(netns, veth);

        Directory.Exists($"/sys/class/net/{veth}").ShouldBeFalse();
        File.Exists(netns).ShouldBeFalse();
        File.ReadAllText("/proc/self/mountinfo").ShouldNotContain($" {netns} ");
        GuestNetwork.Destroy(netns, veth);
        GuestNetwork.ReadAddress(netns).ShouldBeNull();
        GuestNetwork.ReadMac(netns).ShouldBeNull();

        // Only the namespace: what a create that failed at its veth leaves.
        NetNamespace.Create(netns);
        GuestNetwork.ReadAddress(netns).ShouldBeNull("no eth0 in it");
        GuestNetwork.Destroy(netns, veth);
        File.Exists(netns).ShouldBeFalse();
    }

    [Fact]
    public void A_veth_name_that_exists_is_EEXIST_with_the_operation_and_names_and_the_create_undoes_itself()
    {
        RequireRoot();
        var (netns, veth) = (Netns("clash"), Link("c"));
        _bridge.Ensure();
        Run("ip", "link", "add", veth, "type", "bridge");

        var e = Should.Throw<SystemCallException>(() =>
            GuestNetwork.Create("vsinit-unused", netns, veth, _bridge, IPAddress.Parse($"{_prefix}.30")));

        e.Errno.ShouldBe(Errno.EEXIST);
        e.Message.ShouldStartWith($"netlink RTM_NEWLINK veth {veth} (peer eth0 in {netns}): EEXIST (File exists)");
        e.ShouldBeAssignableTo<IOException>("the callers that catch a host's I/O failure catch this too");
        File.Exists(netns).ShouldBeFalse();
        File.ReadAllText("/proc/self/mountinfo").ShouldNotContain($" {netns} ");
    }

    [Fact]
    public void Refusals_name_the_request_the_link_and_the_namespace()
    {
        RequireRoot();
        _bridge.Ensure();
        var missing = Link("m");
        using (var netlink = Netlink.Open())
        {
            Should.Throw<SystemCallException>(() => netlink.AddBridge(_bridge.Name)).Message
                .ShouldStartWith($"netlink RTM_NEWLINK bridge {_bridge.Name}: EEXIST (File exists)");
            var noMaster = Should.Throw<SystemCallException>(() => netlink.SetUp(_bridge.Name, master: missing));
            noMaster.Errno.ShouldBe(Errno.ENODEV);
            noMaster.Message.ShouldStartWith($"netlink RTM_GETLINK {missing}: ENODEV");
            netlink.FindLink(missing).ShouldBeNull();
        }

        var netns = Netns("refusals");
        NetNamespace.Create(netns);
        var inside = Should.Throw<SystemCallException>(() => NetNamespace.Run(netns, () =>
        {
            using var netlink = Netlink.Open(netns);
            netlink.SetUp("eth0");
            return 0;
        }));
        inside.Message.ShouldStartWith($"netlink RTM_NEWLINK eth0 up in {netns}: ENODEV");

        // A file that is no namespace: setns refuses it, and the readers say nothing is there.
        var plain = Netns("plain");
        File.WriteAllText(plain, "");
        Should.Throw<SystemCallException>(() => NetNamespace.Run(plain, () => 0)).Message.ShouldStartWith($"setns {plain}: EINVAL");
        GuestNetwork.ReadMac(plain).ShouldBeNull();
        GuestNetwork.ReadAddress(plain).ShouldBeNull();
    }

    [Fact]
    public void Work_run_in_a_namespace_runs_in_it_and_its_sockets_see_only_its_links()
    {
        RequireRoot();
        var netns = Netns("run");
        NetNamespace.Create(netns);
        var inode = Run("stat", "-L", "-c", "%i", netns).Trim();

        var (where, lo, bridge) = NetNamespace.Run(netns, () =>
        {
            using var netlink = Netlink.Open(netns);
            return (new FileInfo("/proc/thread-self/ns/net").LinkTarget, netlink.FindLink("lo")?.Index, netlink.FindLink(_bridge.Name));
        });

        where.ShouldBe($"net:[{inode}]");
        lo.ShouldBe(1);
        bridge.ShouldBeNull("the host's links are not in it");
    }

    [Fact]
    public void The_bridge_is_made_up_with_the_gateway_once_and_deleted()
    {
        RequireRoot();

        _bridge.Ensure();
        _bridge.Ensure();

        Directory.Exists($"/sys/class/net/{_bridge.Name}/bridge").ShouldBeTrue();
        Flags(Run("ip", "-o", "link", "show", "dev", _bridge.Name)).ShouldContain("UP");
        Run("ip", "-4", "-o", "addr", "show", "dev", _bridge.Name).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .ShouldHaveSingleItem().ShouldContain($" inet {_prefix}.1/24 scope global {_bridge.Name}");
        _bridge.Delete();
        _bridge.Exists.ShouldBeFalse();
        _bridge.Delete();
    }

    [Fact]
    public void A_domains_tap_is_persistent_with_vnet_headers_on_the_bridge_and_up_and_goes_on_destroy()
    {
        RequireRoot();
        var tap = Link("t");
        _bridge.Ensure();

        DomainTap.Create(tap, _bridge);

        File.ReadAllText($"/sys/class/net/{tap}/tun_flags").Trim().ShouldBe("0x5802", "IFF_TAP|IFF_NO_PI|IFF_VNET_HDR|IFF_PERSIST");
        var link = Run("ip", "-o", "link", "show", "dev", tap);
        link.ShouldContain($" master {_bridge.Name} ");
        Flags(link).ShouldContain("UP");
        DomainTap.Destroy(tap);
        DomainTap.Exists(tap).ShouldBeFalse();
        DomainTap.Destroy(tap);

        // A name some other kind of link has: the tun driver refuses it.
        Should.Throw<SystemCallException>(() => Netlink.AddTap(_bridge.Name)).Message
            .ShouldStartWith($"ioctl TUNSETIFF tap {_bridge.Name} (no_pi, vnet_hdr) on /dev/net/tun: EINVAL");
    }
}
