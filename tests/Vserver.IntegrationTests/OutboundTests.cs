using System.Diagnostics;
using Shouldly;
using Xunit;

namespace Vserver.IntegrationTests;

/// <summary>
/// Guests reach the world: an "outside" stands in for it, a network namespace joined to the host by a veth of its own
/// (not through the guests' bridge) with a web server whose CGI answers the address a request came from. The outside
/// has no route to the guest subnet, so a page comes back only through the agent's masquerade. Each test has its own
/// agent, roots, bridge, subnet, namespace and addresses, and removes them even when it fails.
/// </summary>
public sealed class OutboundTests : IAsyncLifetime
{
    private readonly string _id = Guid.NewGuid().ToString("N")[..6];
    private readonly string _www = Directory.CreateTempSubdirectory("vsout-").FullName;
    private TestHost _host = null!;
    private Process? _httpd;
    private string Namespace => $"vsout{_id}";
    private string HostSide => $"vo{_id}h";
    private string Prefix { get; } = $"198.18.{Random.Shared.Next(0, 256)}.{Random.Shared.Next(0, 64) * 4}";
    private string HostAddress => $"{Prefix[..Prefix.LastIndexOf('.')]}.{int.Parse(Prefix[(Prefix.LastIndexOf('.') + 1)..], System.Globalization.CultureInfo.InvariantCulture) + 1}";
    private string OutsideAddress => $"{Prefix[..Prefix.LastIndexOf('.')]}.{int.Parse(Prefix[(Prefix.LastIndexOf('.') + 1)..], System.Globalization.CultureInfo.InvariantCulture) + 2}";

    public async ValueTask InitializeAsync()
    {
        _host = await TestHost.StartAsync();
        TestHost.Run("ip", "netns", "add", Namespace).ShouldSucceed();
        TestHost.Run("ip", "link", "add", HostSide, "type", "veth", "peer", "name", "eth0", "netns", Namespace).ShouldSucceed();
        TestHost.Run("ip", "addr", "add", $"{HostAddress}/30", "dev", HostSide).ShouldSucceed();
        TestHost.Run("ip", "link", "set", HostSide, "up").ShouldSucceed();
        foreach (var args in new[] { new[] { "addr", "add", $"{OutsideAddress}/30", "dev", "eth0" }, ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"] })
            TestHost.Run("ip", ["netns", "exec", Namespace, "ip", .. args]).ShouldSucceed();
        Directory.CreateDirectory(Path.Combine(_www, "cgi-bin"));
        File.WriteAllText(Path.Combine(_www, "index.html"), "the outside\n");
        var cgi = Path.Combine(_www, "cgi-bin", "from");
        File.WriteAllText(cgi, "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n");
        File.SetUnixFileMode(cgi, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        _httpd = Process.Start(new ProcessStartInfo("ip", ["netns", "exec", Namespace, "busybox", "httpd", "-f", "-p", $"{OutsideAddress}:80", "-h", _www])
        {
            UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true,
        })!;
    }

    public async ValueTask DisposeAsync()
    {
        if (_httpd is { HasExited: false }) _httpd.Kill();
        _httpd?.Dispose();
        // The namespace takes its end of the veth with it; the host's end goes with its peer.
        TestHost.Run("ip", "netns", "del", Namespace);
        await _host.DisposeAsync();
        Directory.Delete(_www, recursive: true);
    }

    private CommandResult Fetch(string guest, string path = "cgi-bin/from") =>
        _host.Vsctl("exec", guest, "--", "wget", "-q", "-T", "3", "-O", "-", $"http://{OutsideAddress}/{path}");

    [Fact]
    public async Task A_vserver_reaches_the_outside_with_the_hosts_address_and_not_once_nat_is_off()
    {
        _host.Vsctl("create", "out1").ShouldSucceed();
        _host.Vsctl("start", "out1").ShouldSucceed();
        _host.Vsctl("host").ShouldSucceed().Stdout.ShouldContain("NAT: guests reach beyond the host");

        Fetch("out1").ShouldSucceed().Stdout.Trim().ShouldBe(HostAddress, "the outside sees the host's address on its link: masqueraded");
        Fetch("out1", "index.html").Stdout.ShouldBe("the outside\n");

        _host.Vsctl("host", "set", "--nat", "off").ShouldSucceed().Stdout.ShouldContain("off: guests reach only the host and each other");
        Fetch("out1").Code.ShouldNotBe(0, "with NAT off a guest opens nothing beyond the bridge");
        // Kept across an agent's restart, rules rebuilt from the setting.
        await _host.KillAgentAsync();
        await _host.StartAgentAsync();
        Fetch("out1").Code.ShouldNotBe(0);
        _host.Vsctl("host", "check").ShouldSucceed();

        _host.Vsctl("host", "set", "--nat", "on").ShouldSucceed();
        Fetch("out1").ShouldSucceed().Stdout.Trim().ShouldBe(HostAddress);
        _host.Vsctl("host", "set", "--nat", "maybe").ShouldFailWith("--nat");
    }
}
