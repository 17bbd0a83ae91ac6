using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>What published-port tests share: free host ports, pages over loopback, the agent's nftables table.</summary>
internal static partial class Ports
{
    /// <summary>A port nothing on the host holds now, for TCP and UDP alike (the OS's pick of an ephemeral one).</summary>
    public static int Free()
    {
        while (true)
        {
            using var tcp = new TcpListener(IPAddress.Any, 0);
            tcp.Start();
            var port = ((IPEndPoint)tcp.LocalEndpoint).Port;
            try
            {
                using var udp = new UdpClient(new IPEndPoint(IPAddress.Any, port));
                return port;
            }
            catch (SocketException)
            {
                // Taken for UDP: ask again.
            }
        }
    }

    /// <summary>The page at <paramref name="url"/>, retried until it answers or the time is up; null if it never did.</summary>
    public static string? Page(string url, TimeSpan within)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return http.GetStringAsync(url).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                if (clock.Elapsed > within) return null;
                Thread.Sleep(100);
            }
        }
    }

    /// <summary>The agent's table as nft lists it, or null when there is none.</summary>
    public static string? Table(TestHost host)
    {
        var r = TestHost.Run("nft", "list", "table", "ip", host.PortsTable);
        return r.Code == 0 ? r.Stdout : null;
    }

    /// <summary>Starts a vserver serving "page of NAME" with httpd on port 80; returns its address.</summary>
    public static string WebServer(TestHost host, string name, string memory = "64M")
    {
        host.Vsctl("create", name, "--memory", memory).ShouldSucceed();
        host.Vsctl("start", name).ShouldSucceed();
        host.Vsctl("exec", name, "--", "sh", "-c", $"mkdir -p /srv/www && echo 'page of {name}' > /srv/www/index.html && httpd -p 80 -h /srv/www")
            .ShouldSucceed();
        return JsonDocument.Parse(host.Vsctl("status", name, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("ipv4").GetString()!;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setns(int fd, int nstype);

    private const int CLONE_NEWNET = 0x40000000;

    /// <summary>A UDP socket bound to <paramref name="port"/> inside a guest's network namespace: made on a thread that
    /// joined the namespace and then ends (a socket stays in the namespace it was made in).</summary>
    public static Socket UdpInNamespace(string netnsPath, int port)
    {
        Socket? socket = null;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var ns = File.OpenHandle(netnsPath);
                if (setns((int)ns.DangerousGetHandle(), CLONE_NEWNET) != 0)
                    throw new IOException($"setns {netnsPath}: errno {Marshal.GetLastPInvokeError()}");
                socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 5000 };
                socket.Bind(new IPEndPoint(IPAddress.Any, port));
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        thread.Start();
        thread.Join();
        return socket ?? throw new InvalidOperationException($"no socket in {netnsPath}", error);
    }
}

/// <summary>vsctl port add|list|remove on one shared agent: each test uses its own guests and host ports.</summary>
public sealed class PortTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    [Fact]
    public void A_published_port_answers_on_loopback_is_listed_and_stops_answering_once_removed()
    {
        const string name = "pt-web";
        var ip = Ports.WebServer(Host, name);
        var hostPort = Ports.Free();
        var url = $"http://127.0.0.1:{hostPort}/";

        Host.Vsctl("port", "add", name, $"{hostPort}:80").ShouldSucceed().Stdout
            .ShouldStartWith($"published {name}: host port {hostPort}/tcp -> {ip}:80");
        Ports.Page(url, TimeSpan.FromSeconds(10)).ShouldBe($"page of {name}\n");

        Host.Vsctl("port", "list").ShouldSucceed().Stdout.ShouldMatch($@"(?m)^{name}\s+tcp\s+{hostPort}\s+{ip.Replace(".", @"\.")}:80$");
        var json = JsonDocument.Parse(Host.Vsctl("port", "list", name, "-f", "json").ShouldSucceed().Stdout).RootElement;
        var port = json.GetProperty("guests").EnumerateArray().Single().GetProperty("ports").EnumerateArray().Single();
        (port.GetProperty("hostPort").GetInt32(), port.GetProperty("guestPort").GetInt32(), port.GetProperty("protocol").GetString())
            .ShouldBe((hostPort, 80, "tcp"));
        Host.Vsctl("status", name).ShouldSucceed().Stdout.ShouldContain($"ports:        {hostPort}->80/tcp");
        Ports.Table(Host).ShouldNotBeNull().ShouldContain($"tcp dport {hostPort} dnat to {ip}:80 comment \"{name}\"");
        File.ReadAllText(Path.Combine(Host.GuestDir(name), "guest.json")).ShouldContain($"\"hostPort\": {hostPort}");

        Host.Vsctl("port", "remove", name, hostPort.ToString(System.Globalization.CultureInfo.InvariantCulture)).ShouldSucceed();
        Ports.Page(url, TimeSpan.Zero).ShouldBeNull("the port still answers after its removal");
        (Ports.Table(Host) ?? "").ShouldNotContain($"dport {hostPort} ");
        Host.Vsctl("port", "list", name).ShouldSucceed().Stdout.Trim().ShouldBe("NAME   PROTO   HOST PORT   GUEST");
        Host.Vsctl("status", name, "-f", "json").ShouldSucceed().Stdout.ShouldNotContain("\"ports\"");

        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
    }

    [Fact]
    public void A_host_port_taken_by_a_guest_or_by_a_program_on_the_host_and_bad_specs_are_refused_and_change_nothing()
    {
        Host.Vsctl("create", "pt-first").ShouldSucceed();
        Host.Vsctl("create", "pt-second").ShouldSucceed();
        var published = Ports.Free();
        Host.Vsctl("port", "add", "pt-first", $"{published}:80").ShouldSucceed();
        var table = Ports.Table(Host);

        Host.Vsctl("port", "add", "pt-first", $"{published}:81").ShouldFailWith($"host port {published}/tcp is already published for 'pt-first'");
        Host.Vsctl("port", "add", "pt-second", $"{published}:80/tcp").ShouldFailWith($"host port {published}/tcp is already published for guest 'pt-first'");
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var listening = ((IPEndPoint)listener.LocalEndpoint).Port;
        Host.Vsctl("port", "add", "pt-second", $"{listening}:80").ShouldFailWith($"host port {listening}/tcp is in use on this host");
        using var udp = new UdpClient(new IPEndPoint(IPAddress.Any, 0));
        var bound = ((IPEndPoint)udp.Client.LocalEndPoint!).Port;
        Host.Vsctl("port", "add", "pt-second", $"{bound}:53/udp").ShouldFailWith($"host port {bound}/udp is in use on this host");
        foreach (var (spec, message) in new[]
        {
            ("0:80", "invalid port '0:80': expected HOSTPORT:GUESTPORT[/tcp|udp] with ports 1..65535"),
            ("65536:80", "invalid port '65536:80'"), ("8080:0", "invalid port '8080:0'"),
            ("8080:80/sctp", "invalid port '8080:80/sctp': the protocol is tcp or udp"), ("8080", "invalid port '8080'"),
        })
        {
            var r = Host.Vsctl("port", "add", "pt-second", spec);
            r.ShouldFailWith(message);
            r.Code.ShouldBe(2, r.ToString());
        }
        Host.Vsctl("port", "remove", "pt-second", $"{published}").ShouldFailWith($"guest 'pt-second' publishes no host port {published}/tcp");
        Host.Vsctl("port", "add", "pt-nosuch", "1:1").ShouldFailWith("no guest named 'pt-nosuch'");

        // The same number over the other protocol is another port.
        Host.Vsctl("port", "add", "pt-second", $"{published}:53/udp").ShouldSucceed();
        Host.Vsctl("port", "remove", "pt-second", $"{published}/udp").ShouldSucceed();
        Ports.Table(Host).ShouldBe(table);
        Host.Vsctl("port", "list", "pt-second", "-f", "json").ShouldSucceed().Stdout.ShouldContain("\"ports\": []");

        Host.Vsctl("destroy", "pt-first").ShouldSucceed();
        Host.Vsctl("destroy", "pt-second").ShouldSucceed();
    }

    [Fact]
    public void Destroying_a_guest_removes_its_rules_and_leaves_the_others()
    {
        Host.Vsctl("create", "pt-gone").ShouldSucceed();
        Host.Vsctl("create", "pt-stays").ShouldSucceed();
        var gone = Ports.Free();
        var stays = Ports.Free();
        Host.Vsctl("port", "add", "pt-gone", $"{gone}:80").ShouldSucceed();
        Host.Vsctl("port", "add", "pt-stays", $"{stays}:80").ShouldSucceed();
        Ports.Table(Host).ShouldNotBeNull().ShouldContain($"dport {gone} ");

        Host.Vsctl("destroy", "pt-gone").ShouldSucceed();

        var table = Ports.Table(Host).ShouldNotBeNull();
        table.ShouldNotContain($"dport {gone} ");
        table.ShouldNotContain("\"pt-gone\"");
        table.ShouldContain($"dport {stays} ");
        Host.Vsctl("port", "list").ShouldSucceed().Stdout.ShouldNotContain("pt-gone");
        Host.Vsctl("destroy", "pt-stays").ShouldSucceed();
        (Ports.Table(Host) ?? "").ShouldNotContain("\"pt-stays\"");
    }

    [Fact]
    public void A_published_udp_port_carries_datagrams_both_ways()
    {
        const string name = "pt-udp";
        Host.Vsctl("create", name).ShouldSucceed();
        var hostPort = Ports.Free();
        Host.Vsctl("port", "add", name, $"{hostPort}:5353/udp").ShouldSucceed();
        Ports.Table(Host).ShouldNotBeNull().ShouldContain($"udp dport {hostPort} dnat to ");

        // The guest's side: a socket in its network namespace (it exists from create on, running or not).
        using var guest = Ports.UdpInNamespace(Path.Combine(Host.RunDir, "guests", name, "netns"), 5353);
        using var client = new UdpClient();
        client.Client.ReceiveTimeout = 5000;
        client.Connect(IPAddress.Loopback, hostPort);
        client.Send(Encoding.ASCII.GetBytes("ping"));
        var buffer = new byte[64];
        EndPoint from = new IPEndPoint(IPAddress.Any, 0);
        var length = guest.ReceiveFrom(buffer, ref from);
        Encoding.ASCII.GetString(buffer, 0, length).ShouldBe("ping");
        guest.SendTo(Encoding.ASCII.GetBytes("pong"), from);
        IPEndPoint? remote = null;
        Encoding.ASCII.GetString(client.Receive(ref remote)).ShouldBe("pong");

        Host.Vsctl("destroy", name).ShouldSucceed();
    }

    [Fact]
    public void Ports_in_a_hosting_file_are_published_by_apply_and_withdrawn_when_the_file_drops_them()
    {
        const string name = "pt-hosted";
        var hostPort = Ports.Free();
        var file = Path.Combine(Host.Dir, "pt-hosted.yaml");
        void Write(string ports) => File.WriteAllText(file, $"plans:\n  p: {{ memory: 64M }}\nservers:\n  - {{ name: {name}, plan: p{ports} }}\n");
        Write($", ports: [\"{hostPort}:80\"]");

        Host.Vsctl("apply", file).ShouldSucceed();
        Host.Vsctl("exec", name, "--", "sh", "-c", $"mkdir -p /srv/www && echo 'page of {name}' > /srv/www/index.html && httpd -p 80 -h /srv/www")
            .ShouldSucceed();
        Ports.Page($"http://127.0.0.1:{hostPort}/", TimeSpan.FromSeconds(10)).ShouldBe($"page of {name}\n");
        Host.Vsctl("apply", file).ShouldSucceed().Stdout.ShouldContain("1 unchanged");
        Host.Vsctl("export").ShouldSucceed().Stdout.ShouldContain($"\"{hostPort}:80/tcp\"");

        Write("");
        Host.Vsctl("apply", file).ShouldSucceed();
        Ports.Page($"http://127.0.0.1:{hostPort}/", TimeSpan.Zero).ShouldBeNull();
        Host.Vsctl("port", "list", name).ShouldSucceed().Stdout.ShouldNotContain($"{hostPort}");
        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
    }

    [Fact]
    public async Task The_rules_stay_while_no_agent_runs_and_an_agent_starting_puts_them_back()
    {
        await using var host = await TestHost.StartAsync();
        const string name = "pt-survivor";
        Ports.WebServer(host, name);
        var hostPort = Ports.Free();
        var url = $"http://127.0.0.1:{hostPort}/";
        host.Vsctl("port", "add", name, $"{hostPort}:80").ShouldSucceed();
        Ports.Page(url, TimeSpan.FromSeconds(10)).ShouldBe($"page of {name}\n");

        await host.KillAgentAsync();
        Ports.Page(url, TimeSpan.FromSeconds(5)).ShouldBe($"page of {name}\n", "the guest and its port run on without an agent");
        // What a reboot (or someone flushing the ruleset) does to the rules.
        TestHost.Run("nft", "delete", "table", "ip", host.PortsTable).ShouldSucceed();
        Ports.Page(url, TimeSpan.Zero).ShouldBeNull();

        await host.StartAgentAsync();
        Ports.Page(url, TimeSpan.FromSeconds(10)).ShouldBe($"page of {name}\n");
        host.AgentLog.ShouldContain($"published ports: 1 in nftables table ip {host.PortsTable}");
        host.Vsctl("port", "list").ShouldSucceed().Stdout.ShouldContain($"{hostPort}");
    }
}
