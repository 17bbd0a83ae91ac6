using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>One agent with the Debian image (systemd as init), built once for the class with vsctl as an operator
/// would, and the default domain kernel.</summary>
public sealed class DebianHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Host = await TestHost.StartAsync(buildImage: false);
        try
        {
            Host.Vsctl("image", "build", "debian").ShouldSucceed();
            Host.Vsctl("kernel", "build", "default").ShouldSucceed();
        }
        catch
        {
            await Host.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>
/// A real distribution's systemd as a guest's init (issue 21): the Debian image boots to `running` in an unprivileged
/// vserver (and a privileged one, and a domain), with nothing failed, its own cgroup tree, a journal that outlives
/// restarts and shows systemd's own shutdown, units enabled inside kept, and an agent restart leaving it alone.
/// </summary>
public sealed class SystemdTests(DebianHost shared) : IClassFixture<DebianHost>
{
    private TestHost Host => shared.Host;

    private CommandResult Exec(string guest, params string[] command) => Host.Vsctl(["exec", guest, "--", .. command]);

    /// <summary>Waits for systemd to finish booting; its answer (running, degraded) with what failed, if anything.</summary>
    private string BootedState(string guest, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        string state;
        // A domain's guest agent answers from its initramfs on, before systemd runs there ("offline").
        while ((state = Exec(guest, "systemctl", "is-system-running").Stdout.Trim()) is "initializing" or "starting" or "offline" or "")
        {
            if (DateTime.UtcNow > deadline) break;
            Thread.Sleep(250);
        }
        return state == "running" ? state : $"{state}\n{Exec(guest, "systemctl", "--failed", "--no-pager").Stdout}\n{Exec(guest, "systemctl", "list-jobs", "--no-pager").Stdout}";
    }

    private int InitPid(string guest) =>
        JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("initPid").GetInt32();

    [Fact]
    public async Task An_unprivileged_vserver_boots_systemd_to_running_and_stops_through_its_own_shutdown()
    {
        try
        {
            Host.Vsctl("image", "list").ShouldSucceed().Stdout.ShouldContain("debian");
            Host.Vsctl("create", "sd1", "--image", "debian", "--memory", "384M").ShouldSucceed();
            Host.Vsctl("start", "sd1").ShouldSucceed();
            BootedState("sd1").ShouldBe("running");
            Exec("sd1", "systemctl", "--failed", "--no-pager", "--plain", "--no-legend").Stdout.Trim().ShouldBeEmpty();
            Exec("sd1", "systemd-detect-virt", "--container").Code.ShouldBe(0, "systemd knows it is in a container");
            Exec("sd1", "sh", "-c", "tr -d '\\0' < /proc/1/environ | grep -c container=").ShouldSucceed();
            // Its own cgroup tree, the limits still the host's: the memory it sees is its limit.
            Exec("sd1", "cat", "/proc/1/cgroup").Stdout.ShouldContain("/init.scope");
            Exec("sd1", "sh", "-c", "free -m | awk '/^Mem:/ {print $2}'").Stdout.Trim().ShouldBe("384");
            Exec("sd1", "cat", "/proc/sys/kernel/random/boot_id").Stdout.Trim().ShouldNotBe(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim());
            Exec("sd1", "journalctl", "--no-pager", "-b", "-n", "5").ShouldSucceed().Stdout.ShouldNotBeEmpty();

            // A unit enabled inside is there after a stop and start; the stop went through systemd's own shutdown.
            Exec("sd1", "sh", "-c", "printf '[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/hello.service"
                + " && systemctl enable --now hello.service").ShouldSucceed();
            Exec("sd1", "systemctl", "is-active", "hello").Stdout.Trim().ShouldBe("active");
            Host.Vsctl("stop", "sd1").ShouldSucceed();
            Host.Vsctl("status", "sd1", "-f", "json").Stdout.ShouldContain("\"state\": \"stopped\"");
            Host.Vsctl("start", "sd1").ShouldSucceed();
            BootedState("sd1").ShouldBe("running");
            Exec("sd1", "systemctl", "is-active", "hello").Stdout.Trim().ShouldBe("active", "enabled inside, started at boot");
            var last = Exec("sd1", "journalctl", "--no-pager", "-b", "-1").ShouldSucceed().Stdout;
            last.ShouldContain("Stopped hello.service");
            last.ShouldContain("System Halt", customMessage: "the stop was systemd's halt (SIGRTMIN+3), its services stopped in order");

            // An agent killed and started again leaves systemd alone.
            var pid = InitPid("sd1");
            await Host.KillAgentAsync();
            await Host.StartAgentAsync();
            InitPid("sd1").ShouldBe(pid);
            BootedState("sd1").ShouldBe("running");

            // A login environment for exec and enter.
            Exec("sd1", "sh", "-c", "echo $USER $HOME").Stdout.Trim().ShouldBe("root /root");
            // A command lands inside the guest's cgroup tree, where its init is (never above the namespace's root).
            var own = Exec("sd1", "cat", "/proc/self/cgroup").ShouldSucceed().Stdout;
            own.ShouldNotContain("..");
            own.ShouldContain("/init.scope");
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "sd1").ShouldSucceed();
        }
        Host.ShouldHaveNoTraceOf("sd1");
        await Host.ShouldHaveNothingOrphanedAsync();
    }

    [Fact]
    public void The_image_exported_and_imported_again_boots_systemd_as_the_built_one_does()
    {
        var file = Path.Combine(Host.Dir, "debian.tar.zst");
        try
        {
            Host.Vsctl("image", "export", "debian", "-o", file).ShouldSucceed();
            Host.Vsctl("image", "import", file, "--as", "debian-copy").ShouldSucceed();
            Host.Vsctl("image", "list").ShouldSucceed().Stdout.ShouldMatch(@"(?m)^debian-copy\s.*systemd");
            Host.Vsctl("create", "sdi", "--image", "debian-copy").ShouldSucceed();
            Host.Vsctl("start", "sdi").ShouldSucceed();
            BootedState("sdi").ShouldBe("running");
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "sdi");
            Host.Vsctl("image", "rm", "debian-copy");
            File.Delete(file);
        }
        Host.ShouldHaveNoTraceOf("sdi");
    }

    [Fact]
    public void A_privileged_vserver_boots_systemd_too()
    {
        try
        {
            Host.Vsctl("create", "sd2", "--image", "debian", "--privileged").ShouldSucceed();
            Host.Vsctl("start", "sd2").ShouldSucceed();
            BootedState("sd2").ShouldBe("running");
            Host.Vsctl("stop", "sd2").ShouldSucceed();
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "sd2").ShouldSucceed();
        }
        Host.ShouldHaveNoTraceOf("sd2");
    }

    [Fact]
    public void A_systemd_vserver_promoted_to_a_domain_boots_its_systemd_there_with_its_units_and_comes_back()
    {
        try
        {
            Host.Vsctl("create", "sdp", "--image", "debian", "--memory", "512M").ShouldSucceed();
            Host.Vsctl("start", "sdp").ShouldSucceed();
            BootedState("sdp").ShouldBe("running");
            Exec("sdp", "sh", "-c", "printf '[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/kept.service"
                + " && systemctl enable --now kept.service").ShouldSucceed();

            Host.Vsctl("promote", "sdp").ShouldSucceed().Stdout.ShouldContain("sdp is now a domain (running)");
            BootedState("sdp", seconds: 180).ShouldBe("running");
            Exec("sdp", "systemd-detect-virt", "--container").Code.ShouldNotBe(0, "promoted, it is a machine of its own");
            Exec("sdp", "systemctl", "is-active", "kept").Stdout.Trim().ShouldBe("active", "a unit enabled in the vserver starts in the domain");
            Exec("sdp", "systemctl", "--failed", "--no-pager", "--plain", "--no-legend").Stdout.Trim().ShouldBeEmpty();

            Host.Vsctl("demote", "sdp").ShouldSucceed().Stdout.ShouldContain("sdp is now a vserver (running)");
            BootedState("sdp").ShouldBe("running");
            Exec("sdp", "systemd-detect-virt", "--container").Code.ShouldBe(0);
            Exec("sdp", "systemctl", "is-active", "kept").Stdout.Trim().ShouldBe("active");
            // The domain's boot is in the vserver's journal: one journal for the guest's whole life.
            Exec("sdp", "journalctl", "--list-boots", "--no-pager").Stdout.Trim().Split('\n').Length.ShouldBeGreaterThanOrEqualTo(3);
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "sdp").ShouldSucceed();
        }
        Host.ShouldHaveNoTraceOf("sdp");
    }

    [Fact]
    public void A_domain_of_the_same_image_boots_systemd_to_running()
    {
        try
        {
            Host.Vsctl("create", "sdd", "--kind", "domain", "--image", "debian", "--memory", "512M", "--disk", "2G").ShouldSucceed();
            Host.Vsctl("start", "sdd").ShouldSucceed();
            BootedState("sdd", seconds: 180).ShouldBe("running");
            Exec("sdd", "systemd-detect-virt", "--container").Code.ShouldNotBe(0, "a domain is a machine of its own");
            Host.Vsctl("stop", "sdd").ShouldSucceed();
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "sdd").ShouldSucceed();
        }
        Host.ShouldHaveNoTraceOf("sdd");
    }
}
