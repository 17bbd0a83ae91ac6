using System.Text.Json;
using Vserver.IntegrationTests;

namespace Vserver.FaultTests;

/// <summary>
/// A test host whose state root (VSERVER_ROOT) is a small ext4 of its own, an image file in the host's directory
/// loop-mounted where the root would be, so that the test can fill it. Everything goes on dispose, the loop device too.
/// </summary>
internal sealed class SmallStateDisk : IAsyncDisposable
{
    private SmallStateDisk(TestHost host) => Host = host;

    public TestHost Host { get; }
    private string Image => Path.Combine(Host.Dir, "state.ext4");
    private string FillFile => Path.Combine(Host.Root, "fill");
    private string FillRest => Path.Combine(Host.Root, "fill-rest");

    /// <summary>A 64 MiB state disk with the agent running on it and the busybox image built there.</summary>
    public static async Task<SmallStateDisk> StartAsync()
    {
        var disk = new SmallStateDisk(TestHost.CreateWithoutAgent());
        try
        {
            using (var file = new FileStream(disk.Image, FileMode.CreateNew)) file.SetLength(64L << 20);
            // No blocks reserved for root: the agent runs as root and would otherwise write on into them.
            TestHost.Run("mkfs.ext4", "-q", "-F", "-m", "0", disk.Image).ShouldSucceed();
            Directory.CreateDirectory(disk.Host.Root);
            TestHost.Run("mount", "-o", "loop", disk.Image, disk.Host.Root).ShouldSucceed();
            await disk.Host.StartAgentAsync();
            disk.Host.Vsctl("image", "build", "busybox").ShouldSucceed();
            return disk;
        }
        catch
        {
            await disk.DisposeAsync();
            throw;
        }
    }

    public long FreeBytes => new DriveInfo(Host.Root).AvailableFreeSpace;

    /// <summary>Fills the state disk until <paramref name="leaveBytes"/> are free (0: until a write gets ENOSPC).</summary>
    public void Fill(long leaveBytes = 0)
    {
        var bulk = FreeBytes - leaveBytes - (leaveBytes == 0 ? 1L << 20 : 0);
        if (bulk > 0) TestHost.Run("fallocate", "-l", bulk.ToString(System.Globalization.CultureInfo.InvariantCulture), FillFile).ShouldSucceed();
        if (leaveBytes > 0) return;
        // The rest a block at a time, until the filesystem says no.
        var rest = TestHost.Run("dd", "if=/dev/zero", $"of={FillRest}", "bs=1k");
        rest.Stderr.ShouldContain("No space left on device", customMessage: rest.ToString());
        FreeBytes.ShouldBe(0);
    }

    public void Unfill()
    {
        File.Delete(FillFile);
        File.Delete(FillRest);
    }

    /// <summary>Temp files a config write left (AtomicFile's ".NAME.tmp-PID-TID"), anywhere on the state disk.</summary>
    public IReadOnlyList<string> TempFiles() =>
        Directory.EnumerateFiles(Path.Combine(Host.Root, "guests"), ".*.tmp-*", SearchOption.AllDirectories).ToList();

    public void ShouldHaveNoTraceOf(string guest)
    {
        Host.ShouldHaveNoTraceOf(guest);
        Directory.EnumerateFileSystemEntries(Path.Combine(Host.Root, "guests"), $".{guest}*").ShouldBeEmpty($"a hidden leftover of {guest}");
        TempFiles().ShouldBeEmpty("temp files of a config write left on the state disk");
    }

    /// <summary>The agent still answers and has not logged a crash.</summary>
    public async Task ShouldStillServeAsync()
    {
        using var client = Host.Client();
        await client.HostAsync();
        Host.AgentPid.ShouldNotBe(0);
        Directory.Exists($"/proc/{Host.AgentPid}").ShouldBeTrue("the agent died");
        Host.AgentLog.ShouldNotContain("Unhandled exception");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            // Destroys the guests, ends the agent, lazily unmounts everything under its directory (the state disk too).
            await Host.DisposeAsync();
        }
        finally
        {
            // The loop device of the state disk goes once the lazy unmount lets go of it; make sure it does.
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (LoopDevicesOf(Image) is { Count: > 0 } devices)
            {
                if (clock.Elapsed > TimeSpan.FromSeconds(5))
                {
                    foreach (var device in devices) TestHost.Run("losetup", "-d", device);
                    break;
                }
                Thread.Sleep(100);
            }
        }
    }

    private static List<string> LoopDevicesOf(string image)
    {
        var devices = new List<string>();
        foreach (var dir in Directory.EnumerateDirectories("/sys/block", "loop*"))
        {
            try
            {
                var backing = File.ReadAllText(Path.Combine(dir, "loop", "backing_file")).TrimEnd('\n');
                if (backing == image || backing == image + " (deleted)") devices.Add("/dev/" + Path.GetFileName(dir));
            }
            catch (IOException)
            {
            }
        }
        return devices;
    }
}

/// <summary>A full state disk: create, set and apply refuse with one line that says so and leave nothing half-made;
/// the agent keeps serving, guests keep starting and stopping, and once there is space again everything works.</summary>
public sealed class DiskFullTests
{
    private const string Full = "the state disk is full: cannot write ";

    private static JsonElement Status(TestHost host, string guest) =>
        JsonDocument.Parse(host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement;

    private static string MemoryLimitFile(TestHost host, string guest) =>
        Path.Combine("/sys/fs/cgroup/memory", host.CgroupParent, guest, "memory.limit_in_bytes");

    [Fact]
    public async Task Create_and_set_on_a_full_state_disk_fail_in_one_line_leave_nothing_and_the_agent_serves_on()
    {
        await using var disk = await SmallStateDisk.StartAsync();
        var host = disk.Host;
        host.Vsctl("create", "first", "--memory", "64M").ShouldSucceed();
        var config = Path.Combine(host.GuestDir("first"), "guest.json");
        var configBefore = File.ReadAllText(config);
        disk.Fill();

        var refused = host.Vsctl("create", "second").ShouldFailWith(Full);
        refused.Stderr.ShouldContain($"free space on the filesystem of {host.Root} (df {host.Root}) and retry", Case.Sensitive);
        disk.ShouldHaveNoTraceOf("second");
        await disk.ShouldStillServeAsync();
        host.Vsctl("list").ShouldSucceed().Stdout.ShouldNotContain("second");

        // The guest made before goes on starting and stopping; a set of its limits, live or in its config, is refused
        // and changes neither.
        host.Vsctl("start", "first").ShouldSucceed();
        host.Vsctl("exec", "first", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("first");
        var liveBefore = File.ReadAllText(MemoryLimitFile(host, "first")).Trim();
        liveBefore.ShouldBe((64L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        host.Vsctl("set", "first", "--memory", "96M").ShouldFailWith(Full);
        File.ReadAllText(MemoryLimitFile(host, "first")).Trim().ShouldBe(liveBefore, "the refused limit stayed applied to the running guest");
        Status(host, "first").GetProperty("memoryBytes").GetInt64().ShouldBe(64L << 20);
        host.Vsctl("set", "first", "--restart", "always").ShouldFailWith(Full);
        Status(host, "first").GetProperty("restart").GetString().ShouldBe("no");
        File.ReadAllText(config).ShouldBe(configBefore);
        disk.TempFiles().ShouldBeEmpty();
        // A second of sampling (meminfo, usage) on the full disk, then a stop.
        await Task.Delay(1200, TestContext.Current.CancellationToken);
        host.Vsctl("stop", "first").ShouldSucceed();
        await disk.ShouldStillServeAsync();

        // With space again, everything works as before.
        disk.Unfill();
        host.Vsctl("create", "second").ShouldSucceed();
        host.Vsctl("start", "second").ShouldSucceed();
        host.Vsctl("set", "first", "--memory", "96M", "--restart", "always").ShouldSucceed();
        var after = Status(host, "first");
        after.GetProperty("memoryBytes").GetInt64().ShouldBe(96L << 20);
        after.GetProperty("restart").GetString().ShouldBe("always");
        File.ReadAllText(config).ShouldNotBe(configBefore);
    }

    [Fact]
    public async Task A_create_that_runs_out_of_space_at_any_step_leaves_nothing_behind()
    {
        await using var disk = await SmallStateDisk.StartAsync();
        var host = disk.Host;
        // A few KiB free (1 KiB blocks): the create runs out at its directory, its config, or after the config at its
        // layer's directories. Whichever: one line, and nothing of the guest is left.
        var refusals = new List<string>();
        for (var kib = 1; kib <= 8; kib++)
        {
            disk.Unfill();
            disk.Fill(leaveBytes: kib << 10);
            var name = $"tight{kib}";
            var result = host.Vsctl("create", name);
            if (result.Code == 0)
            {
                host.Vsctl("destroy", name).ShouldSucceed();
            }
            else
            {
                result.ShouldFailWith(Full);
                refusals.Add(result.Stderr.Trim());
            }
            disk.ShouldHaveNoTraceOf(name);
        }
        refusals.Count.ShouldBeGreaterThanOrEqualTo(3, string.Join("\n", refusals));
        refusals.ShouldContain(r => r.Contains($"cannot write {host.GuestDir("tight")}", StringComparison.Ordinal)
                                    && !r.Contains("guest.json", StringComparison.Ordinal),
            $"no create ran out of space after writing its config:\n{string.Join("\n", refusals)}");
        await disk.ShouldStillServeAsync();
    }

    [Fact]
    public async Task Apply_on_a_full_state_disk_fails_per_server_with_the_same_error_and_makes_nothing()
    {
        await using var disk = await SmallStateDisk.StartAsync();
        var host = disk.Host;
        host.Vsctl("create", "kept", "--memory", "64M").ShouldSucceed();
        var config = Path.Combine(host.GuestDir("kept"), "guest.json");
        var configBefore = File.ReadAllText(config);
        // The hosting file lives beside the state disk, not on it.
        var hosting = Path.Combine(host.Dir, "hosting.yaml");
        File.WriteAllText(hosting, """
            plans:
              small: { memory: 80M, pids: 100 }
            servers:
              - { name: kept, plan: small, running: false }
              - { name: shop1, plan: small }
              - { name: shop2, plan: small, running: false }

            """);
        disk.Fill();

        var result = host.Vsctl("apply", hosting);
        result.Code.ShouldBe(1, result.ToString());
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        foreach (var name in new[] { "kept", "shop1", "shop2" })
        {
            var line = lines.Single(l => l.StartsWith($"{name}: ", StringComparison.Ordinal));
            line.ShouldContain($"{name}: FAILED at ");
            line.ShouldContain(Full);
            line.ShouldContain($"free space on the filesystem of {host.Root}");
        }
        result.Stdout.ShouldContain("0 created, 0 changed, 0 unchanged, 0 removed, 3 failed");
        disk.ShouldHaveNoTraceOf("shop1");
        disk.ShouldHaveNoTraceOf("shop2");
        File.ReadAllText(config).ShouldBe(configBefore);
        Status(host, "kept").GetProperty("memoryBytes").GetInt64().ShouldBe(64L << 20);
        await disk.ShouldStillServeAsync();

        disk.Unfill();
        host.Vsctl("apply", hosting).ShouldSucceed().Stdout.ShouldContain("2 created, 1 changed, 0 unchanged, 0 removed, 0 failed");
        Status(host, "shop1").GetProperty("state").GetString().ShouldBe("running");
        Status(host, "kept").GetProperty("memoryBytes").GetInt64().ShouldBe(80L << 20);
    }

    [Fact]
    public async Task A_disk_quota_the_state_disk_cannot_hold_is_refused_and_destroy_frees_a_full_disk()
    {
        await using var disk = await SmallStateDisk.StartAsync();
        var host = disk.Host;
        host.Vsctl("create", "quota1", "--disk", "16M").ShouldSucceed();
        host.Vsctl("start", "quota1").ShouldSucceed();

        // Room for a config, not for the 16M layer a quota promises: refused before anything is made, naming what is free.
        disk.Fill(leaveBytes: 6L << 20);
        var refused = host.Vsctl("create", "quota2", "--disk", "16M").ShouldFailWith("the state disk is too full for the 16M disk quota of 'quota2': ");
        refused.Stderr.ShouldMatch($@"\b[56](\.\d)?M free on the filesystem of {System.Text.RegularExpressions.Regex.Escape(host.Root)}; free space there .* or give a smaller disk quota");
        disk.ShouldHaveNoTraceOf("quota2");
        // Without a quota it fits.
        host.Vsctl("create", "small").ShouldSucceed();

        // Full to the last block: destroy, the way to free the disk, still works, and leaves no mount or loop device.
        disk.Unfill();
        disk.Fill();
        host.Vsctl("create", "quota3", "--disk", "16M").ShouldFailWith("the state disk is too full");
        host.Vsctl("stop", "quota1").ShouldSucceed();
        host.Vsctl("destroy", "quota1").ShouldSucceed();
        disk.ShouldHaveNoTraceOf("quota1");
        host.Vsctl("destroy", "small").ShouldSucceed();
        disk.ShouldHaveNoTraceOf("small");
        disk.FreeBytes.ShouldBeGreaterThan(0);
        await disk.ShouldStillServeAsync();
    }
}
