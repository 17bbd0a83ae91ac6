using Shouldly;
using Vserver.Isolation.Guests;
using Xunit;

namespace Vserver.Tests.Guests;

/// <summary>The spec lines vsinit parses (native/spec.c, parse_spec) for the guest's memory view.</summary>
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
}
