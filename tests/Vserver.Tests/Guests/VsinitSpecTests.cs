using System.Net;
using Shouldly;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Guests;

/// <summary>The spec lines vsinit parses (native/spec.c, parse_spec) for the guest's memory view and its resolv.conf.</summary>
public sealed class VsinitSpecTests
{
    private static string[] Lines(VsinitSpec spec) => spec.Render().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void Meminfo_and_notify_socket_are_one_line_each()
    {
        string[] lines = Lines(new VsinitSpec
        {
            Args = ["/sbin/init"],
            SeccompFilter = "/run/vserver/guests/web1/seccomp.bpf",
            Meminfo = "/run/vserver/guests/web1/meminfo",
            NotifySocket = "/run/vserver/guests/web1/notify.sock",
        });

        lines.Where(l => l.StartsWith("meminfo", StringComparison.Ordinal)).ShouldBe(["meminfo /run/vserver/guests/web1/meminfo"]);
        lines.Where(l => l.StartsWith("notify_socket", StringComparison.Ordinal)).ShouldBe(["notify_socket /run/vserver/guests/web1/notify.sock"]);
        lines.ShouldContain("seccomp /run/vserver/guests/web1/seccomp.bpf");
    }

    [Fact]
    public void Without_them_there_are_no_such_lines()
    {
        Lines(new VsinitSpec { Args = ["/sbin/init"], SeccompFilter = "/f.bpf" })
            .ShouldNotContain(l => l.StartsWith("meminfo", StringComparison.Ordinal) || l.StartsWith("notify_socket", StringComparison.Ordinal));
    }

    [Fact]
    public void An_exec_spec_says_how_long_a_hung_up_command_has_before_SIGKILL()
    {
        Lines(new VsinitSpec { Args = ["sleep", "1000"], TargetPid = 42, HangupGrace = TimeSpan.FromSeconds(5) })
            .Where(l => l.StartsWith("hangup_grace_ms", StringComparison.Ordinal)).ShouldBe(["hangup_grace_ms 5000"]);
        Lines(new VsinitSpec { Args = ["/sbin/init"] }).ShouldNotContain(l => l.StartsWith("hangup_grace_ms", StringComparison.Ordinal));
    }

    [Fact]
    public void A_path_with_a_newline_is_refused()
    {
        Should.Throw<ArgumentException>(() => new VsinitSpec { Args = ["x"], Meminfo = "/run/a\nb" }.Render())
            .Message.ShouldStartWith("meminfo must not contain a newline");
        Should.Throw<ArgumentException>(() => new VsinitSpec { Args = ["x"], NotifySocket = "/run/a\nb" }.Render())
            .Message.ShouldStartWith("notify_socket must not contain a newline");
    }

    [Fact]
    public void Resolv_conf_travels_a_line_per_directive_and_the_lines_are_exactly_what_ResolvConf_renders()
    {
        var resolv = new ResolvConf([IPAddress.Parse("10.88.0.1"), IPAddress.Parse("2001:db8::53")], "example.test");

        var lines = Lines(new VsinitSpec { Args = ["/sbin/init"], Resolv = resolv })
            .Where(l => l.StartsWith("resolv_line ", StringComparison.Ordinal)).Select(l => l["resolv_line ".Length..]).ToList();

        lines.ShouldBe([
            "# written by vserver at each start; create the guest with --dns none to keep your own",
            "nameserver 10.88.0.1",
            "nameserver 2001:db8::53",
            "search example.test",
        ]);
        // vsinit ends each line with a newline: the file is Render()'s text, byte for byte.
        string.Concat(lines.Select(l => l + "\n")).ShouldBe(resolv.Render());
    }

    [Fact]
    public void Without_resolv_there_is_no_resolv_line_and_the_guest_keeps_its_own_file()
    {
        new VsinitSpec { Args = ["/sbin/init"] }.Render().ShouldNotContain("resolv");
        // No servers is still a file to write (the header says so): one line, not none.
        Lines(new VsinitSpec { Args = ["/sbin/init"], Resolv = new ResolvConf([], null) })
            .Count(l => l.StartsWith("resolv_line ", StringComparison.Ordinal)).ShouldBe(1);
    }
}
