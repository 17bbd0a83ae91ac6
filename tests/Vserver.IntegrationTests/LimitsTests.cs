namespace Vserver.IntegrationTests;

public sealed class LimitsTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    [Fact]
    public void A_memory_hog_over_the_limit_is_killed_and_the_vserver_survives()
    {
        Host.Vsctl("create", "hogged", "--memory", "32M").ShouldSucceed();
        Host.Vsctl("start", "hogged").ShouldSucceed();

        // dd allocates its block size: 128M of buffer in a 32M guest.
        var hog = Host.Vsctl("exec", "hogged", "--", "dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1");
        hog.Code.ShouldBe(137, hog.ToString());

        Host.Vsctl("status", "hogged").Stdout.ShouldContain("running");
        Host.Vsctl("exec", "hogged", "--", "true").ShouldSucceed();
        var oom = File.ReadAllText(Path.Combine("/sys/fs/cgroup/memory", Host.CgroupParent, "hogged", "memory.oom_control"));
        oom.ShouldContain("oom_kill 1");
    }

    [Fact]
    public void A_pids_limit_stops_a_fork_bomb()
    {
        Host.Vsctl("create", "bombed", "--pids", "30").ShouldSucceed();
        Host.Vsctl("start", "bombed").ShouldSucceed();

        var pidsDir = Path.Combine("/sys/fs/cgroup/pids", Host.CgroupParent, "bombed");
        var bomb = Host.Vsctl("exec", "bombed", "--", "sh", "-c", "i=0; while [ $i -lt 100 ]; do sleep 4 & i=$((i+1)); done");
        bomb.Code.ShouldNotBe(0, bomb.ToString());
        bomb.Stderr.ShouldContain("can't fork");
        int.Parse(File.ReadAllText(Path.Combine(pidsDir, "pids.current")).Trim(), System.Globalization.CultureInfo.InvariantCulture)
            .ShouldBeLessThanOrEqualTo(30, "processes in the guest stay within --pids");
        File.ReadAllText(Path.Combine(pidsDir, "pids.events")).ShouldNotContain("max 0");
        Host.Vsctl("status", "bombed").Stdout.ShouldContain("running");
        // Once the bomb's children end, the guest works normally again.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (Host.Vsctl("exec", "bombed", "--", "true").Code != 0 && DateTime.UtcNow < deadline) Thread.Sleep(500);
        Host.Vsctl("exec", "bombed", "--", "true").ShouldSucceed();
    }
}
