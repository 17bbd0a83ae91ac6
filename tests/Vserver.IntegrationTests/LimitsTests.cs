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

        var bomb = Host.Vsctl("exec", "bombed", "--", "sh", "-c",
            "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done 2>/dev/null; ps -o pid | wc -l");
        bomb.Code.ShouldBe(0, bomb.ToString());
        var count = int.Parse(bomb.Stdout.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        count.ShouldBeLessThanOrEqualTo(31, "processes in the guest (plus the ps header) stay within --pids");
        File.ReadAllText(Path.Combine("/sys/fs/cgroup/pids", Host.CgroupParent, "bombed", "pids.events")).ShouldNotContain("max 0");
        Host.Vsctl("status", "bombed").Stdout.ShouldContain("running");
    }
}
