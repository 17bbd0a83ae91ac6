using System.Net;
using System.Text;
using HybridHypervisor.Domains;
using HybridHypervisor.Domains.GuestAgent;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;

namespace Vserver.IntegrationTests;

/// <summary>
/// A real domain (TCG, the initramfs of images/kernel/build.sh) booted with the kernel command line
/// <see cref="QemuCommand"/> makes for a routed public address and a resolv.conf, checked from inside through the guest
/// agent: the address as a /32 with the gateway on-link, and /etc/resolv.conf what a vserver is given, written over the
/// symlink the image planted without touching its target.
/// </summary>
public sealed class DomainGuestSetupTests(BuiltKernel kernel)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<string> RunAsync(GuestAgentClient agent, params string[] argv)
    {
        using var process = await agent.StartAsync(new GuestCommand(argv), Ct);
        using var stdout = new MemoryStream();
        var copy = process.Stdout.CopyToAsync(stdout, Ct);
        await process.Stdin.DisposeAsync();
        (await process.ExitCode.WaitAsync(TimeSpan.FromSeconds(60), Ct)).ShouldBe(0, string.Join(' ', argv));
        await copy;
        return Encoding.UTF8.GetString(stdout.ToArray());
    }

    [Fact]
    public async Task A_domain_with_a_routed_address_and_resolv_conf_gets_both_from_its_initramfs()
    {
        var subnet = Ipv4Subnet.Parse("10.0.2.0/24");
        var address = GuestAddress.For(IPAddress.Parse("198.18.7.9"), subnet);
        var resolv = new ResolvConf([IPAddress.Parse("10.0.2.3"), IPAddress.Parse("2001:db8::53")], "a.example b.example");
        var cmdline = QemuCommand.KernelCommandLine(new DomainLaunch
        {
            Name = "setup", Accelerator = AcceleratorKind.Tcg, Vmlinux = kernel.Vmlinux, Initrd = kernel.Initrd, Vcpus = 1,
            MemoryBytes = 256L << 20, Disk = "/d", Tap = "vt0", Mac = "52:54:00:aa:bb:cc", Address = address.Cidr,
            Gateway = address.Gateway.ToString(), QmpSocket = "/q", ConsoleSocket = "/c", ConsoleLog = "/l", AgentSocket = "/a",
            PidFile = "/p", Resolv = resolv,
        });
        var parameters = string.Join(' ', cmdline.Split(' ').Where(w => w.StartsWith("vserver.", StringComparison.Ordinal)
            && !w.StartsWith("vserver.hostname=", StringComparison.Ordinal)));
        parameters.ShouldContain("vserver.ip=198.18.7.9/32");
        parameters.ShouldContain("vserver.dns=");

        await using var domain = TestDomain.Boot(kernel, parameters, rootfs =>
        {
            // systemd-resolved's way: the image's resolv.conf is a link.
            File.WriteAllText(Path.Combine(rootfs, "etc", "target"), "the image's file\n");
            File.CreateSymbolicLink(Path.Combine(rootfs, "etc", "resolv.conf"), "/etc/target");
        });
        await using var agent = await GuestAgentClient.ConnectAsync(domain.AgentSocket, Ct);
        try
        {
            await agent.WaitReadyAsync(TimeSpan.FromSeconds(120), Ct);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"the domain's guest agent did not come up: {e.Message}\n--- console ---\n{domain.Console()}", e);
        }

        (await RunAsync(agent, "cat", "/etc/resolv.conf")).ShouldBe(resolv.Render(), domain.Console());
        (await RunAsync(agent, "stat", "-c", "%u:%g %a %F", "/etc/resolv.conf")).Trim().ShouldBe("0:0 644 regular file");
        (await RunAsync(agent, "cat", "/etc/target")).ShouldBe("the image's file\n");
        domain.Console().ShouldContain("vserver-initramfs: resolv.conf nameservers 10.0.2.3,2001:db8::53 search a.example,b.example");

        (await RunAsync(agent, "ip", "-4", "-o", "addr", "show", "dev", "eth0")).ShouldContain(" inet 198.18.7.9/32 ");
        // busybox ip pads some fields with a second space: compare words.
        var routes = (await RunAsync(agent, "ip", "-4", "route", "show")).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(r => string.Join(' ', r.Split(' ', StringSplitOptions.RemoveEmptyEntries))).ToList();
        routes.ShouldBe(["default via 10.0.2.1 dev eth0 src 198.18.7.9", "10.0.2.1 dev eth0 scope link"], ignoreOrder: true);
    }
}
