using System.Diagnostics;
using Vserver.IntegrationTests;

namespace Vserver.SecurityTests;

/// <summary>
/// The suite can fail: the same probe, run on the host itself (as root, outside any vserver), reports SUCCEEDED
/// wherever the attempt is allowed there. A probe that always said "refused" would fail these. Only attempts that are
/// harmless on a real host run here: the probe opens for writing but never writes, mounts only in its own mount
/// namespace under the test's temp dir, and makes device nodes only there.
/// </summary>
public sealed class HostSideTests(ProbeHost probe) : IClassFixture<ProbeHost>
{
    [Theory]
    [InlineData("kallsyms")]
    [InlineData("unmask-proc")]
    [InlineData("mknod-disk")]
    [InlineData("mount-disk")]
    [InlineData("sys-rw")]
    [InlineData("sysctl")]
    [InlineData("host-pids")]
    [InlineData("proc-mount")]
    [InlineData("agent-socket")]
    [InlineData("devices")]
    [InlineData("bpf")]
    [InlineData("perf")]
    [InlineData("keyctl")]
    [InlineData("shocker")]
    [InlineData("uid-map")]
    [InlineData("hostname")]
    public void On_the_host_the_attempt_succeeds(string attempt)
    {
        string[] args = attempt switch
        {
            "mknod-disk" => [attempt, probe.DiskMajor, probe.DiskMinor],
            "mount-disk" => [attempt, probe.RootDevice, probe.DiskMajor, probe.DiskMinor],
            "host-pids" or "proc-mount" => [attempt, probe.AgentPid, probe.AgentComm],
            "agent-socket" => [attempt, probe.Host.Socket],
            "uid-map" => [attempt, "65536"],
            "hostname" => [attempt, probe.HostUts],
            _ => [attempt],
        };
        if (attempt == "kallsyms" && File.ReadAllText("/proc/sys/kernel/kptr_restrict").Trim() == "2")
            Assert.Skip("kernel.kptr_restrict hides kernel addresses even from host root here");

        var before = HostState.Capture();
        probe.OnHost(args).ShouldHaveSucceeded();
        HostState.Capture().ShouldBeUnchangedFrom(before);
        Directory.EnumerateFileSystemEntries(probe.Host.Dir, "probe-*").ShouldBeEmpty("the probe cleans up its scratch files");
    }

    [Fact]
    public void On_the_host_a_process_can_be_ptraced()
    {
        using var sleeper = Process.Start("sleep", "60");
        try
        {
            probe.OnHost("ptrace", sleeper.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)).ShouldHaveSucceeded();
        }
        finally
        {
            sleeper.Kill();
        }
    }

    [Fact]
    public void On_the_host_a_climb_out_of_a_chroot_reaches_the_real_root()
    {
        // The success the vservers' chroot test looks for, shown where it exists.
        probe.OnHost("chroot", probe.Marker).ShouldHaveSucceeded()
            .ShouldSay("climb out with fchdir + ..", "SUCCEEDED")
            .ShouldSay("chroot into a jail", "allowed");
    }

    [Fact]
    public void The_probe_refuses_to_guess()
    {
        var r = TestHostRun(probe.Probe, "no-such-attempt");
        r.Code.ShouldBe(2, r.ToString());
        r.Stdout.ShouldStartWith("error: usage: probe ");
        TestHostRun(probe.Probe, "mknod-disk", "x", "0").Code.ShouldBe(2);
    }

    private static CommandResult TestHostRun(string program, params string[] args) => TestHost.Run(program, args);
}
