using System.Net;
using System.Net.Sockets;
using HybridHypervisor;
using HybridHypervisor.Model;
using Shouldly;
using Vserver.Api;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Xunit;

namespace Vserver.Tests.Network;

/// <summary>Published ports: how they are written, checked, stored and turned into the agent's nftables table.</summary>
public sealed class PortForwardingTests
{
    private static readonly Ipv4Subnet Subnet = Ipv4Subnet.Parse("10.88.0.0/24");

    private static readonly PortForward[] Forwards =
    [
        new(PortProtocol.Udp, 5353, IPAddress.Parse("10.88.0.3"), 53, "dns1"),
        new(PortProtocol.Tcp, 8443, IPAddress.Parse("10.88.0.2"), 443, "web1"),
        new(PortProtocol.Tcp, 8080, IPAddress.Parse("10.88.0.2"), 80, "web1"),
    ];

    [Fact]
    public void The_table_is_replaced_whole_with_dnat_for_outside_and_host_traffic_and_what_loopback_needs()
    {
        PortForwarding.Render("vsbr0", new HostRules(Subnet, Forwards, Nat: false)).ShouldBe("""
            table ip vserver_vsbr0
            delete table ip vserver_vsbr0
            table ip vserver_vsbr0 {
            	set routed {
            		type ipv4_addr
            		flags interval
            	}
            	chain prerouting {
            		type nat hook prerouting priority dstnat; policy accept;
            		fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80 comment "web1"
            		fib daddr type local tcp dport 8443 dnat to 10.88.0.2:443 comment "web1"
            		fib daddr type local udp dport 5353 dnat to 10.88.0.3:53 comment "dns1"
            	}
            	chain output {
            		type nat hook output priority -100; policy accept;
            		fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80 comment "web1"
            		fib daddr type local tcp dport 8443 dnat to 10.88.0.2:443 comment "web1"
            		fib daddr type local udp dport 5353 dnat to 10.88.0.3:53 comment "dns1"
            	}
            	chain postrouting {
            		type nat hook postrouting priority srcnat; policy accept;
            		oifname "vsbr0" ct status dnat ip saddr 127.0.0.0/8 masquerade
            		oifname "vsbr0" ct status dnat ip saddr 10.88.0.0/24 masquerade
            	}
            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		iifname "vsbr0" oifname != "vsbr0" ip saddr != @routed ct state new drop
            	}
            	chain input {
            		type filter hook input priority filter; policy accept;
            		iifname "vsbr0" ip daddr 127.0.0.0/8 ct state != { established, related } drop
            		iifname != { "vsbr0", "lo" } ip daddr 10.88.0.1 meta l4proto { tcp, udp } th dport 53 drop
            	}
            }

            """.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Outbound_nat_masquerades_the_guest_subnet_out_of_every_other_interface()
    {
        var table = PortForwarding.Render("vst1a2b", new HostRules(Subnet, [], Nat: true));
        table.ShouldStartWith("table ip vserver_vst1a2b\ndelete table ip vserver_vst1a2b\ntable ip vserver_vst1a2b {\n");
        table.ShouldContain("\t\tip saddr 10.88.0.0/24 oifname != \"vst1a2b\" masquerade\n");
        table.ShouldNotContain("chain forward");
        table.ShouldNotContain("dnat to");
    }

    [Fact]
    public void Without_nat_and_ports_the_table_keeps_guests_of_the_subnet_from_opening_anything_beyond_the_bridge_but_not_routed_ones()
    {
        PortForwarding.Render("vst1a2b", new HostRules(Subnet, [], Nat: false, Routed: Ipv4Subnet.Parse("203.0.113.16/28", 1, 32))).ShouldBe("""
            table ip vserver_vst1a2b
            delete table ip vserver_vst1a2b
            table ip vserver_vst1a2b {
            	set routed {
            		type ipv4_addr
            		flags interval
            		elements = { 203.0.113.16/28 }
            	}
            	chain postrouting {
            		type nat hook postrouting priority srcnat; policy accept;
            	}
            	chain forward {
            		type filter hook forward priority filter; policy accept;
            		iifname "vst1a2b" oifname != "vst1a2b" ip saddr != @routed ct state new drop
            	}
            	chain input {
            		type filter hook input priority filter; policy accept;
            		iifname "vst1a2b" ip daddr 127.0.0.0/8 ct state != { established, related } drop
            		iifname != { "vst1a2b", "lo" } ip daddr 10.88.0.1 meta l4proto { tcp, udp } th dport 53 drop
            	}
            }

            """.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Each_agent_owns_the_table_named_after_its_bridge()
    {
        PortForwarding.TableFor("vsbr0").ShouldBe("vserver_vsbr0");
        PortForwarding.TableFor("vs-br.1").ShouldBe("vserver_vs-br.1");
        Should.Throw<FormatException>(() => PortForwarding.TableFor("bad name"));
    }

    [Fact]
    public void Nft_accepts_the_rendered_table()
    {
        // nft --check parses and validates against the running kernel without changing anything.
        var routed = Ipv4Subnet.Parse("203.0.113.16/28", 1, 32);
        foreach (var (forwards, nat, range) in new[] { (Forwards, true, routed), (Forwards, false, null), (Array.Empty<PortForward>(), true, null), (Array.Empty<PortForward>(), false, routed) })
        {
            var (code, _, stderr) = HostProgram.TryRun("nft", ["--check", "-f", "-"], PortForwarding.Render("vs-chk.0", new HostRules(Subnet, forwards, nat, range)));
            code.ShouldBe(0, stderr);
        }
    }

    [Fact]
    public void A_guests_ports_are_checked_for_range_and_for_a_host_port_given_twice()
    {
        GuestConfigValidator.PortsError([new PortInfo(8080, 80), new PortInfo(8080, 53, "udp")]).ShouldBeNull();
        GuestConfigValidator.PortsError([new PortInfo(8080, 80), new PortInfo(8080, 81)])
            .ShouldBe("host port 8080/tcp is published twice; keep one");
        GuestConfigValidator.PortError(new PortInfo(0, 80)).ShouldBe("invalid host port 0: give a port from 1 to 65535");
        GuestConfigValidator.PortError(new PortInfo(80, 65536)).ShouldBe("invalid guest port 65536: give a port from 1 to 65535");
        GuestConfigValidator.PortError(new PortInfo(80, 80, "sctp")).ShouldNotBeNull();
    }

    [Fact]
    public void Ports_are_kept_in_the_config_and_a_config_from_before_them_loads_without_any()
    {
        var root = Directory.CreateTempSubdirectory("vsports-").FullName;
        try
        {
            var options = new FleetOptions
            {
                StateRoot = root, RunRoot = Path.Combine(root, "run"), BridgeName = "vsx", Subnet = Subnet,
                CgroupParent = "x", VsinitPath = "/nonexistent", RecipesRoot = root,
            };
            var store = new GuestStore(options);
            var web = new GuestConfig
            {
                Name = "web1", Image = "busybox", Security = new GuestSecurity { Privileged = true },
                Network = new GuestNetworkConfig { Ipv4 = "10.88.0.2", Ports = [new PortInfo(8080, 80), new PortInfo(5353, 53, "udp")] },
            };
            store.Save(web);
            var json = File.ReadAllText(store.PathsFor("web1").Config);
            json.ShouldContain("\"protocol\": \"udp\"");
            json.ShouldContain("\"hostPort\": 8080");
            Directory.CreateDirectory(Path.Combine(root, "guests", "old"));
            File.WriteAllText(store.PathsFor("old").Config,
                """{"name": "old", "image": "busybox", "network": {"ipv4": "10.88.0.3"}, "security": {"privileged": true}}""");
            Directory.CreateDirectory(Path.Combine(root, "guests", "twice"));
            File.WriteAllText(store.PathsFor("twice").Config,
                """{"name": "twice", "image": "busybox", "network": {"ports": [{"hostPort": 1, "guestPort": 2}, {"hostPort": 1, "guestPort": 3, "protocol": "tcp"}]}, "security": {"privileged": true}}""");

            var (guests, broken) = store.LoadAll(2);

            guests.Single(g => g.Name == "web1").Network.Ports.ShouldBe(web.Network.Ports);
            guests.Single(g => g.Name == "old").Network.Ports.ShouldBeEmpty();
            broken.ShouldHaveSingleItem().Problem.ShouldContain("host port 1/tcp is published twice");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void Listening_tcp_sockets_and_bound_udp_sockets_are_read_from_proc_net()
    {
        const string tcp = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
               1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
            """;
        HostPorts.LocalPorts(tcp, "0A").ShouldBe(new HashSet<int> { 8080 });
        const string tcp6 = """
              sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
               0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
            """;
        HostPorts.LocalPorts(tcp6, "0A").ShouldBe(new HashSet<int> { 22 });
        const string udp = """
               sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
              100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4 2 0 0
              101: 0A000002:D431 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 5 2 0 0
            """;
        HostPorts.LocalPorts(udp, "07").ShouldBe(new HashSet<int> { 5353 });
    }

    [Fact]
    public void A_port_a_program_on_the_host_holds_is_seen_as_in_use()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var tcpPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var udp = new UdpClient(new IPEndPoint(IPAddress.Any, 0));
        var udpPort = ((IPEndPoint)udp.Client.LocalEndPoint!).Port;

        HostPorts.InUse(PortProtocol.Tcp, tcpPort).ShouldBeTrue();
        HostPorts.InUse(PortProtocol.Udp, udpPort).ShouldBeTrue();
        listener.Stop();
        HostPorts.InUse(PortProtocol.Tcp, tcpPort).ShouldBeFalse();
    }
}
