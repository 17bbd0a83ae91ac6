using System.Diagnostics;
using System.Globalization;

namespace Vserver.IntegrationTests;

/// <summary>
/// An "outside" standing in for the internet and the upstream resolver: a network namespace joined to the host by a veth
/// of its own (not through the guests' bridge), on a /30 of 198.18.0.0/15 (the benchmarking range: nobody's real
/// addresses), with a web server whose CGI answers the address a request came from and a DNS server (dnsmasq) that
/// answers NAME.outside.test with the outside's own address. It has no route to the guest subnet, so an answer reaches
/// a guest only through the host's masquerade, or through a route the test gives it to a routed range. Everything it
/// made goes on dispose, by pid and name, even when the test failed.
/// </summary>
public sealed class Outside : IDisposable
{
    private readonly string _www = Directory.CreateTempSubdirectory("vsout-").FullName;
    private readonly List<Process> _servers = [];

    public string Namespace { get; }
    /// <summary>The host's end of the veth: the uplink of routed addresses in these tests.</summary>
    public string HostSide { get; }
    public string HostAddress { get; }
    public string Address { get; }

    public Outside()
    {
        var id = Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(3));
        Namespace = $"vsout{id}";
        HostSide = $"vo{id}h";
        while (true)
        {
            var net = $"198.18.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(0, 64) * 4}";
            if (TestHost.Run("ip", "route", "show", $"{net}/30").Stdout.Trim().Length > 0) continue;
            var last = net.LastIndexOf('.');
            var b = int.Parse(net[(last + 1)..], CultureInfo.InvariantCulture);
            HostAddress = $"{net[..last]}.{b + 1}";
            Address = $"{net[..last]}.{b + 2}";
            break;
        }
        try
        {
            TestHost.Run("ip", "netns", "add", Namespace).ShouldSucceed();
            TestHost.Run("ip", "link", "add", HostSide, "type", "veth", "peer", "name", "eth0", "netns", Namespace).ShouldSucceed();
            TestHost.Run("ip", "addr", "add", $"{HostAddress}/30", "dev", HostSide).ShouldSucceed();
            TestHost.Run("ip", "link", "set", HostSide, "up").ShouldSucceed();
            foreach (var args in new[] { new[] { "addr", "add", $"{Address}/30", "dev", "eth0" }, ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"] })
                In("ip", args).ShouldSucceed();
            Directory.CreateDirectory(Path.Combine(_www, "cgi-bin"));
            File.WriteAllText(Path.Combine(_www, "index.html"), "the outside\n");
            var cgi = Path.Combine(_www, "cgi-bin", "from");
            File.WriteAllText(cgi, "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n");
            File.SetUnixFileMode(cgi, (UnixFileMode)Convert.ToInt32("755", 8));
            // /tmp dirs are 0700: the web server runs as root here all the same.
            Serve("busybox", "httpd", "-f", "-p", $"{Address}:80", "-h", _www);
            Serve("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=",
                "--bind-interfaces", $"--listen-address={Address}", $"--address=/outside.test/{Address}");
            // Both listen before the test talks to them.
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (!Listening(80, "tcp") || !Listening(53, "udp"))
            {
                if (DateTime.UtcNow > deadline) throw new InvalidOperationException("the outside's web and DNS servers did not start");
                Thread.Sleep(50);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Runs a command inside the outside's network namespace. nsenter, not ip netns exec: that one also makes a
    /// mount namespace, a copy of every host mount of the moment, which would keep other tests' layers on their loop
    /// devices for as long as the servers run.</summary>
    public CommandResult In(string program, params string[] args) => TestHost.Run("nsenter", [$"--net=/run/netns/{Namespace}", program, .. args]);

    private bool Listening(int port, string protocol) =>
        In("ss", "-Hln", protocol == "tcp" ? "-t" : "-u", $"sport = :{port}").Stdout.Trim().Length > 0;

    private void Serve(string program, params string[] args)
    {
        // nsenter execs the program: the pid is the server's own.
        _servers.Add(Process.Start(new ProcessStartInfo("nsenter", [$"--net=/run/netns/{Namespace}", program, .. args])
        {
            UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true,
        })!);
    }

    public void Dispose()
    {
        foreach (var server in _servers)
        {
            try
            {
                if (!server.HasExited) server.Kill();
                server.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
            }
            server.Dispose();
        }
        // The namespace takes its end of the veth with it; the host's end goes with its peer.
        TestHost.Run("ip", "netns", "del", Namespace);
        if (Directory.Exists($"/sys/class/net/{HostSide}")) TestHost.Run("ip", "link", "del", HostSide);
        Directory.Delete(_www, recursive: true);
    }
}
