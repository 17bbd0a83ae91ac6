using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>What a disk quota's guest and its host see: the guest's writable layer is an ext4 image of the quota's size,
/// so df / inside shows it, a write past it fails inside with ENOSPC, and nothing outside is touched.</summary>
public static class DiskQuota
{
    public const long M = 1L << 20;

    /// <summary>df -k / inside the guest: size and available, in bytes.</summary>
    public static (long Size, long Available) Df(TestHost host, string guest)
    {
        var lines = host.Vsctl("exec", guest, "--", "df", "-k", "/").ShouldSucceed().Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var fields = lines[^1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (long.Parse(fields[1], CultureInfo.InvariantCulture) * 1024, long.Parse(fields[3], CultureInfo.InvariantCulture) * 1024);
    }

    /// <summary>The filesystem of a quota of <paramref name="quota"/> shows that size less its journal and tables (a 128M
    /// one has a 16M journal: df shows 108M).</summary>
    public static void ShouldShowQuota(this (long Size, long Available) df, long quota, string why)
    {
        df.Size.ShouldBeLessThanOrEqualTo(quota, why);
        df.Size.ShouldBeGreaterThan(quota * 80 / 100, why);
    }

    /// <summary>Loop devices whose backing file lies in the guest's directory.</summary>
    public static IReadOnlyList<string> LoopDevicesOf(TestHost host, string guest)
    {
        var dir = host.GuestDir(guest) + "/";
        var found = new List<string>();
        foreach (var loop in Directory.EnumerateDirectories("/sys/block", "loop*"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(loop, "loop", "backing_file")).StartsWith(dir, StringComparison.Ordinal)) found.Add(Path.GetFileName(loop));
            }
            catch (IOException)
            {
            }
        }
        return found;
    }

    /// <summary>Whether the guest's layer image is mounted on the host.</summary>
    public static bool LayerMounted(TestHost host, string guest) =>
        File.ReadAllText("/proc/self/mountinfo").Contains($" {host.GuestDir(guest)}/layer ", StringComparison.Ordinal);

    /// <summary>No loop device left for the guest (a loop device goes with its filesystem's last user, which an overlay
    /// still going away may be for a moment).</summary>
    public static void ShouldHoldNoLoopDevice(TestHost host, string guest, string why)
    {
        var clock = Stopwatch.StartNew();
        while (LoopDevicesOf(host, guest).Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(50);
        LoopDevicesOf(host, guest).ShouldBeEmpty(why);
    }

    public static JsonElement Status(TestHost host, string guest) =>
        JsonDocument.Parse(host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement;

    /// <summary>The agent may grow a mounted ext4 only with CAP_SYS_RESOURCE; it has the capabilities of this process.</summary>
    public static bool CanGrowOnline
    {
        get
        {
            var capEff = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("CapEff:", StringComparison.Ordinal))["CapEff:".Length..].Trim();
            return (ulong.Parse(capEff, NumberStyles.HexNumber, CultureInfo.InvariantCulture) >> 24 & 1) == 1;
        }
    }
}

public sealed class DiskQuotaTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private const long M = DiskQuota.M;
    private TestHost Host => shared.Host;

    [Fact]
    public void A_quota_stops_a_writer_at_its_size_inside_and_grows_with_set()
    {
        Host.Vsctl("create", "dq1", "--disk", "64M").ShouldSucceed();
        Host.Vsctl("create", "dq1free").ShouldSucceed();
        Host.Vsctl("start", "dq1").ShouldSucceed();
        Host.Vsctl("start", "dq1free").ShouldSucceed();
        DiskQuota.LayerMounted(Host, "dq1").ShouldBeTrue();
        DiskQuota.Df(Host, "dq1").ShouldShowQuota(64 * M, "df / inside a 64M vserver");

        var fill = Host.Vsctl("exec", "dq1", "--", "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=100");
        fill.Code.ShouldNotBe(0, fill.ToString());
        fill.Stderr.ShouldContain("No space left on device");
        DiskQuota.Df(Host, "dq1").Available.ShouldBeLessThan(2 * M);
        var status = DiskQuota.Status(Host, "dq1");
        status.GetProperty("diskBytes").GetInt64().ShouldBe(64 * M);
        status.GetProperty("diskUsedBytes").GetInt64().ShouldBeGreaterThan(50 * M);
        Host.Vsctl("status", "dq1").ShouldSucceed().Stdout.ShouldMatch(@"disk:\s+5\d(\.\d)?M of 64M used");
        // Nothing outside is touched: the host's state disk holds at most the quota for it, and another guest writes on.
        var allocated = long.Parse(TestHost.Run("du", "-k", "--", Path.Combine(Host.GuestDir("dq1"), "layer.ext4")).ShouldSucceed().Stdout.Split('\t')[0],
            CultureInfo.InvariantCulture) * 1024;
        allocated.ShouldBeLessThanOrEqualTo(64 * M);
        Host.Vsctl("exec", "dq1free", "--", "dd", "if=/dev/zero", "of=/data", "bs=1M", "count=80").ShouldSucceed();
        Host.Vsctl("exec", "dq1free", "--", "df", "-k", "/").ShouldSucceed().Stdout.ShouldNotContain("100%");

        Host.Vsctl("set", "dq1", "--disk", "32M").ShouldFailWith("shrinking it to 32M is refused");
        var grown = Host.Vsctl("set", "dq1", "--disk", "128M").ShouldSucceed().Stdout;
        DiskQuota.Status(Host, "dq1").GetProperty("diskBytes").GetInt64().ShouldBe(128 * M);
        if (DiskQuota.CanGrowOnline)
        {
            DiskQuota.Df(Host, "dq1").ShouldShowQuota(128 * M, "grown live");
        }
        else
        {
            // The kernel grows a mounted ext4 only for CAP_SYS_RESOURCE: the new size applies at the next start.
            grown.ShouldContain("disk 128M (the layer is 64M until its next start, which grows it to 128M)");
            DiskQuota.Df(Host, "dq1").ShouldShowQuota(64 * M, "not grown yet");
            Host.Vsctl("status", "dq1").ShouldSucceed().Stdout.ShouldContain("until its next start");
        }
        Host.Vsctl("set", "dq1", "--disk", "96M").ShouldFailWith("shrinking it to 96M is refused");

        // Stop and start: the files stay, the image is unmounted in between, and it comes back at its full size.
        Host.Vsctl("stop", "dq1").ShouldSucceed();
        DiskQuota.LayerMounted(Host, "dq1").ShouldBeFalse("a stopped vserver's layer is not mounted");
        DiskQuota.ShouldHoldNoLoopDevice(Host, "dq1", "a stopped vserver holds no loop device");
        Host.Vsctl("status", "dq1").ShouldSucceed().Stdout.ShouldContain("128M quota (use shown while it runs)");
        Host.Vsctl("start", "dq1").ShouldSucceed();
        DiskQuota.Df(Host, "dq1").ShouldShowQuota(128 * M, "after the restart");
        long.Parse(Host.Vsctl("exec", "dq1", "--", "stat", "-c", "%s", "/fill").ShouldSucceed().Stdout.Trim(), CultureInfo.InvariantCulture)
            .ShouldBeGreaterThan(50 * M, "the file written up to the quota is still there");
        Host.Vsctl("exec", "dq1", "--", "dd", "if=/dev/zero", "of=/more", "bs=1M", "count=40").ShouldSucceed();

        // A stopped vserver's quota grows at once.
        Host.Vsctl("stop", "dq1").ShouldSucceed();
        Host.Vsctl("set", "dq1", "--disk", "256M").ShouldSucceed().Stdout.ShouldEndWith("disk 256M\n");
        Host.Vsctl("start", "dq1").ShouldSucceed();
        DiskQuota.Df(Host, "dq1").ShouldShowQuota(256 * M, "grown while stopped");

        Host.Vsctl("destroy", "--force", "dq1").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("dq1");
        DiskQuota.ShouldHoldNoLoopDevice(Host, "dq1", "destroy leaves no loop device");
        Host.Vsctl("destroy", "--force", "dq1free").ShouldSucceed();
    }

    [Fact]
    public void A_quota_below_what_the_image_needs_is_refused_and_leaves_no_guest()
    {
        Host.Vsctl("create", "dq2", "--disk", "8M").ShouldFailWith("disk quota 8M is below the minimum of 16M");
        Host.ShouldHaveNoTraceOf("dq2");
        Host.Vsctl("create", "dq2", "--disk", "100000000").ShouldFailWith("is not a whole number of MiB; give e.g. --disk 96M");
        Host.ShouldHaveNoTraceOf("dq2");

        // An image with 300M of files: its layer must be able to hold them once more.
        var image = Path.Combine(Host.Root, "images", "dq-large");
        Directory.CreateDirectory(Path.Combine(image, "rootfs"));
        File.WriteAllText(Path.Combine(image, "image.json"),
            """{ "name": "dq-large", "sizeBytes": 314572800, "created": "2026-01-01T00:00:00+00:00", "digest": "sha256:00" }""");
        try
        {
            var refused = Host.Vsctl("create", "dq2", "--image", "dq-large", "--disk", "256M")
                .ShouldFailWith("disk quota 256M is too small for image dq-large: the layer must hold a rewrite of its 300M of files");
            Host.ShouldHaveNoTraceOf("dq2");
            var minimum = System.Text.RegularExpressions.Regex.Match(refused.Stderr, @"give --disk (\d+M) or more").Groups[1].Value;
            minimum.ShouldNotBeEmpty();
            Host.Vsctl("create", "dq2", "--image", "dq-large", "--disk", minimum).ShouldSucceed();
            Host.Vsctl("destroy", "dq2").ShouldSucceed();
            Host.ShouldHaveNoTraceOf("dq2");
        }
        finally
        {
            Directory.Delete(image, recursive: true);
        }
    }

    [Fact]
    public void A_hosting_plan_with_a_disk_gives_its_servers_the_quota_and_raising_it_grows_them()
    {
        var dir = Directory.CreateTempSubdirectory("vsquota-").FullName;
        var file = Path.Combine(dir, "hosting.yaml");
        const string Hosting = """
            plans:
              q: { memory: 64M, disk: 32M }
            servers:
              - { name: dqplan1, plan: q }
              - { name: dqplan2, plan: q }
            """;
        try
        {
            File.WriteAllText(file, Hosting);
            Host.Vsctl("apply", file).ShouldSucceed();
            foreach (var name in new[] { "dqplan1", "dqplan2" })
            {
                DiskQuota.Df(Host, name).ShouldShowQuota(32 * M, $"df / inside {name}");
                var fill = Host.Vsctl("exec", name, "--", "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=64");
                fill.Code.ShouldNotBe(0, fill.ToString());
                fill.Stderr.ShouldContain("No space left on device");
            }
            Host.Vsctl("apply", file).ShouldSucceed().Stdout.ShouldContain("0 created, 0 changed, 2 unchanged");

            File.WriteAllText(file, Hosting.Replace("disk: 32M", "disk: 48M", StringComparison.Ordinal));
            var grown = Host.Vsctl("apply", file).ShouldSucceed().Stdout;
            grown.ShouldContain("disk 32M -> 48M");
            // Running: grown online where the agent may resize a mounted ext4, else apply says it waits for the next start.
            if (grown.Contains("the disk does not grow live here", StringComparison.Ordinal))
                grown.ShouldContain("which grows it to 48M");
            else
                DiskQuota.Df(Host, "dqplan1").ShouldShowQuota(48 * M, "df / inside dqplan1 after a live grow");
            DiskQuota.Status(Host, "dqplan1").GetProperty("diskBytes").GetInt64().ShouldBe(48 * M);
            File.WriteAllText(file, Hosting.Replace("disk: 32M", "disk: 16M", StringComparison.Ordinal));
            Host.Vsctl("apply", file).Stdout.ShouldContain("a quota only grows");
        }
        finally
        {
            Host.Vsctl("destroy", "--force", "dqplan1");
            Host.Vsctl("destroy", "--force", "dqplan2");
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_vserver_without_a_quota_keeps_its_plain_layer_and_cannot_be_given_one_by_set()
    {
        Host.Vsctl("create", "dq3").ShouldSucceed();
        Directory.Exists(Path.Combine(Host.GuestDir("dq3"), "upper")).ShouldBeTrue();
        File.Exists(Path.Combine(Host.GuestDir("dq3"), "layer.ext4")).ShouldBeFalse();
        Host.Vsctl("status", "dq3").ShouldSucceed().Stdout.ShouldMatch(@"disk:\s+no quota");
        Host.Vsctl("set", "dq3", "--disk", "1G").ShouldFailWith("'dq3' has no disk quota");
        Host.Vsctl("destroy", "dq3").ShouldSucceed();
    }
}

/// <summary>A quota's layer across agent deaths: a running guest is adopted with its mount; a guest that ended while no
/// agent ran has its image unmounted by the next agent. Its own host: the agent is killed.</summary>
public sealed class DiskQuotaAgentTests
{
    private const long M = DiskQuota.M;

    [Fact]
    public async Task A_new_agent_adopts_a_running_quota_guest_and_unmounts_the_layer_of_one_that_ended()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "dqa", "--disk", "32M").ShouldSucceed();
        host.Vsctl("start", "dqa").ShouldSucceed();
        host.Vsctl("exec", "dqa", "--", "sh", "-c", "echo kept > /kept").ShouldSucceed();
        var pid = DiskQuota.Status(host, "dqa").GetProperty("initPid").GetInt32();

        await host.KillAgentAsync();
        await host.StartAgentAsync();
        DiskQuota.Status(host, "dqa").GetProperty("initPid").GetInt32().ShouldBe(pid);
        DiskQuota.Status(host, "dqa").GetProperty("diskUsedBytes").GetInt64().ShouldBeGreaterThan(0);
        // Unmounted behind the agent's back: the next agent mounts it again on the one loop device the guest holds.
        TestHost.Run("umount", "-l", Path.Combine(host.GuestDir("dqa"), "layer")).ShouldSucceed();
        await host.KillAgentAsync();
        await host.StartAgentAsync();
        DiskQuota.LayerMounted(host, "dqa").ShouldBeTrue();
        DiskQuota.LoopDevicesOf(host, "dqa").Count.ShouldBe(1);
        DiskQuota.Df(host, "dqa").ShouldShowQuota(32 * M, "adopted");

        // The guest ends while no agent runs: the next agent unmounts its layer.
        await host.KillAgentAsync();
        TestHost.Run("kill", "-9", pid.ToString(CultureInfo.InvariantCulture)).ShouldSucceed();
        var clock = Stopwatch.StartNew();
        while (Directory.Exists($"/proc/{pid}") && clock.Elapsed < TimeSpan.FromSeconds(5)) await Task.Delay(50, TestContext.Current.CancellationToken);
        DiskQuota.LayerMounted(host, "dqa").ShouldBeTrue("no agent has run since the guest ended");
        await host.StartAgentAsync();
        DiskQuota.LayerMounted(host, "dqa").ShouldBeFalse("the new agent unmounts the layer of a guest that is not running");
        DiskQuota.ShouldHoldNoLoopDevice(host, "dqa", "no loop device is left for it");

        host.Vsctl("start", "dqa").ShouldSucceed();
        host.Vsctl("exec", "dqa", "--", "cat", "/kept").ShouldSucceed().Stdout.ShouldBe("kept\n");
        host.Vsctl("destroy", "--force", "dqa").ShouldSucceed();
        host.ShouldHaveNoTraceOf("dqa");
        DiskQuota.ShouldHoldNoLoopDevice(host, "dqa", "destroy leaves no loop device");
    }
}

/// <summary>A create that dies after making the quota's image leaves nothing once an agent runs again. Its own host.</summary>
public sealed class DiskQuotaCrashTests
{
    [Fact]
    public async Task An_agent_that_dies_after_making_the_image_leaves_nothing_once_restarted()
    {
        await using var host = await TestHost.StartAsync();
        await host.KillAgentAsync();
        await host.StartAgentAsync(new Dictionary<string, string> { ["VSERVER_FAILPOINTS"] = "create.after-storage" });

        host.Vsctl("create", "dqhalf", "--disk", "64M").Code.ShouldNotBe(0);
        (await host.WaitForAgentExitAsync(TimeSpan.FromSeconds(10))).ShouldNotBe(0);
        File.Exists(Path.Combine(host.GuestDir("dqhalf"), "layer.ext4")).ShouldBeTrue("the failpoint fires after the image was made");

        await host.StartAgentAsync();
        host.ShouldHaveNoTraceOf("dqhalf");
        DiskQuota.ShouldHoldNoLoopDevice(host, "dqhalf", "no loop device");
        host.Vsctl("create", "dqhalf", "--disk", "64M").ShouldSucceed();
        host.Vsctl("destroy", "dqhalf").ShouldSucceed();
        host.ShouldHaveNoTraceOf("dqhalf");
    }
}

/// <summary>Promotion of a vserver with a quota: the domain boots from the same layer (its image stays mounted while the
/// domain runs, and its df shows the quota), demote gives the vserver back with it; --copy gives the domain a disk of at
/// least the quota and removes the image.</summary>
public sealed class DiskQuotaPromotionTests(DomainHost shared) : IClassFixture<DomainHost>
{
    private const long M = DiskQuota.M;
    private TestHost Host => shared.Host;

    [Fact]
    public void A_promoted_quota_vserver_keeps_its_quota_as_a_domain_and_back()
    {
        Host.Vsctl("create", "dqp", "--disk", "64M", "--memory", "128M").ShouldSucceed();
        Host.Vsctl("start", "dqp").ShouldSucceed();
        Host.Vsctl("exec", "dqp", "--", "sh", "-c", "echo mine > /mine").ShouldSucceed();
        // Another quota vserver, running while the domain's virtiofsd gets its mount namespace.
        Host.Vsctl("create", "dqpother", "--disk", "32M").ShouldSucceed();
        Host.Vsctl("start", "dqpother").ShouldSucceed();
        Host.Vsctl("promote", "dqp").ShouldSucceed().Stdout.ShouldContain("its disk quota of 64M still applies");
        // virtiofsd's namespace holds no copy of the other's layer mount, so stopping it frees its loop device at once.
        Host.Vsctl("stop", "dqpother").ShouldSucceed();
        DiskQuota.ShouldHoldNoLoopDevice(Host, "dqpother", "another guest's virtiofsd must not hold this one's layer");
        Host.Vsctl("destroy", "dqpother").ShouldSucceed();

        DiskQuota.Status(Host, "dqp").GetProperty("diskBytes").GetInt64().ShouldBe(64 * M);
        DiskQuota.Df(Host, "dqp").ShouldShowQuota(64 * M, "df / inside the domain (virtiofs over the layer)");
        Host.Vsctl("exec", "dqp", "--", "cat", "/mine").ShouldSucceed().Stdout.ShouldBe("mine\n");
        var fill = Host.Vsctl("exec", "dqp", "--", "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=100");
        fill.Code.ShouldNotBe(0, fill.ToString());
        fill.Stderr.ShouldContain("No space left on device");
        Host.Vsctl("exec", "dqp", "--", "rm", "/fill").ShouldSucceed();

        Host.Vsctl("stop", "dqp").ShouldSucceed();
        DiskQuota.LayerMounted(Host, "dqp").ShouldBeFalse("a stopped domain's layer is not mounted");
        DiskQuota.ShouldHoldNoLoopDevice(Host, "dqp", "a stopped domain holds no loop device");

        Host.Vsctl("demote", "dqp").ShouldSucceed();
        Host.Vsctl("start", "dqp").ShouldSucceed();
        DiskQuota.Df(Host, "dqp").ShouldShowQuota(64 * M, "a vserver again");
        Host.Vsctl("exec", "dqp", "--", "cat", "/mine").ShouldSucceed().Stdout.ShouldBe("mine\n");

        Host.Vsctl("promote", "dqp", "--copy").ShouldSucceed();
        File.Exists(Path.Combine(Host.GuestDir("dqp"), "layer.ext4")).ShouldBeFalse("the copy is the domain's root; the layer image goes");
        DiskQuota.LayerMounted(Host, "dqp").ShouldBeFalse();
        DiskQuota.ShouldHoldNoLoopDevice(Host, "dqp", "the copied vserver's layer holds no loop device");
        Host.Vsctl("exec", "dqp", "--", "cat", "/mine").ShouldSucceed().Stdout.ShouldBe("mine\n");

        Host.Vsctl("destroy", "--force", "dqp").ShouldSucceed();
        Host.ShouldHaveNoTraceOf("dqp");
    }
}
