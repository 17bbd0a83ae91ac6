using System.Net;
using System.Security.Cryptography;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;

namespace Vserver.IntegrationTests;

/// <summary>
/// The real vsinit start writing a guest's /etc/resolv.conf (<see cref="VsinitSpec.Resolv"/>), without an agent: a
/// minimal image (static busybox) as the lower layer, an empty upper layer owned by the guest's root, a user namespace
/// with an id range of its own, and an init that reports what it sees and exits. The monitor ends with it; whatever
/// still runs is killed and the temp dir removed, even when a test failed.
/// </summary>
public sealed class GuestResolvConfTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsresolv-").FullName;
    /// <summary>A slot of its own, far above the agent's default range, so no other guest shares the ids.</summary>
    private readonly long _hostBase = 3_000_000_000L + RandomNumberGenerator.GetInt32(0, 10_000) * 65536L;
    private readonly List<int> _inits = [];

    private string Lower => Path.Combine(_dir, "lower");
    private string Upper => Path.Combine(_dir, "upper");
    private string ConsoleLog => Path.Combine(_dir, "console");

    private static readonly ResolvConf Resolv = new([IPAddress.Parse("10.88.0.1"), IPAddress.Parse("2001:db8::53")], "example.test");

    public GuestResolvConfTests()
    {
        Directory.CreateDirectory(Path.Combine(Lower, "bin"));
        File.Copy("/bin/busybox", Path.Combine(Lower, "bin", "busybox"));
        foreach (var applet in new[] { "sh", "cat", "stat", "readlink", "ls", "echo" })
            File.CreateSymbolicLink(Path.Combine(Lower, "bin", applet), "busybox");
        Directory.CreateDirectory(Upper);
        Directory.CreateDirectory(Path.Combine(_dir, "work"));
        Directory.CreateDirectory(Path.Combine(_dir, "rootfs"));
        // The guest's "/" is its root's, as WritableLayer.Provision makes it.
        TestHost.Run("chown", $"{_hostBase}:{_hostBase}", Upper).ShouldSucceed();
    }

    public void Dispose()
    {
        foreach (var pid in _inits)
            using (var init = ProcessHandle.TryOpen(pid))
                init?.Signal(9);
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Starts the guest with <paramref name="script"/> as its init (busybox sh) and waits for it to end; what it
    /// printed. A start vsinit refused throws <see cref="GuestStartException"/>.</summary>
    private async Task<string> RunGuestAsync(string script, ResolvConf? resolv)
    {
        var spec = new VsinitSpec
        {
            Name = "resolv-test",
            Hostname = "resolv-test",
            Rootfs = Path.Combine(_dir, "rootfs"),
            Lower = Lower,
            Upper = Upper,
            Work = Path.Combine(_dir, "work"),
            IdMap = (_hostBase, 65536),
            ExitFile = Path.Combine(_dir, "exit"),
            Console = ConsoleLog,
            Resolv = resolv,
            Args = ["/bin/sh", "-c", script],
        };
        var specPath = Path.Combine(_dir, "vsinit.spec");
        File.WriteAllText(specPath, spec.Render());
        var started = Vsinit.Start(Path.Combine(Binaries.Dir, "vsinit"), specPath);
        _inits.Add(started.InitPid);
        using (started.Monitor)
            (await started.Monitor.Exited.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken)).Code.ShouldBe(0);
        File.ReadAllText(Path.Combine(_dir, "exit")).ShouldBe("exited 0\n", File.ReadAllText(ConsoleLog));
        return File.ReadAllText(ConsoleLog);
    }

    private static string Owner(string path) => TestHost.Run("stat", "-c", "%u:%g %a %F", path).ShouldSucceed().Stdout.Trim();

    [Fact]
    public async Task The_file_says_what_ResolvConf_renders_and_belongs_to_the_guests_root_inside_and_to_its_host_id_outside()
    {
        var seen = await RunGuestAsync("cat /etc/resolv.conf; stat -c '%u:%g %a %F' /etc/resolv.conf", Resolv);

        seen.ShouldBe(Resolv.Render() + "0:0 644 regular file\n");
        var written = Path.Combine(Upper, "etc", "resolv.conf");
        File.ReadAllText(written).ShouldBe(Resolv.Render());
        Owner(written).ShouldBe($"{_hostBase}:{_hostBase} 644 regular file");
        // /etc was missing from the image: made in the guest's layer, the guest root's too, and no temp file left.
        Owner(Path.Combine(Upper, "etc")).ShouldBe($"{_hostBase}:{_hostBase} 755 directory");
        Directory.EnumerateFileSystemEntries(Path.Combine(Upper, "etc")).Select(Path.GetFileName).ShouldBe(["resolv.conf"]);
    }

    [Theory]
    [InlineData("/etc/target")]
    [InlineData("/run/systemd/resolve/stub-resolv.conf")]
    [InlineData("/proc/sys/kernel/hostname")]
    public async Task A_symlink_in_the_image_is_replaced_by_a_regular_file_and_its_target_is_untouched(string target)
    {
        Directory.CreateDirectory(Path.Combine(Lower, "etc"));
        File.WriteAllText(Path.Combine(Lower, "etc", "target"), "the image's file\n");
        File.CreateSymbolicLink(Path.Combine(Lower, "etc", "resolv.conf"), target);

        var seen = await RunGuestAsync("readlink /etc/resolv.conf; cat /etc/resolv.conf; cat /etc/target; cat /proc/sys/kernel/hostname", Resolv);

        seen.ShouldBe(Resolv.Render() + "the image's file\nresolv-test\n", "no link left inside; the link's target as it was");
        new FileInfo(Path.Combine(Upper, "etc", "resolv.conf")).LinkTarget.ShouldBeNull();
        File.ReadAllText(Path.Combine(Upper, "etc", "resolv.conf")).ShouldBe(Resolv.Render());
        // Nothing was written through the link: no copy-up of its target, nothing made on the way to it.
        File.Exists(Path.Combine(Upper, "etc", "target")).ShouldBeFalse();
        Directory.Exists(Path.Combine(Upper, "run")).ShouldBeFalse();
        File.ReadAllText(Path.Combine(Lower, "etc", "target")).ShouldBe("the image's file\n");
        new FileInfo(Path.Combine(Lower, "etc", "resolv.conf")).LinkTarget.ShouldBe(target);
    }

    [Fact]
    public async Task Without_resolv_the_guests_own_file_and_link_are_left_alone()
    {
        Directory.CreateDirectory(Path.Combine(Lower, "etc"));
        File.WriteAllText(Path.Combine(Lower, "etc", "resolv.conf"), "nameserver 192.0.2.53\n");

        var seen = await RunGuestAsync("cat /etc/resolv.conf", resolv: null);

        seen.ShouldBe("nameserver 192.0.2.53\n");
        // Not even copied up: the guest's layer has no /etc at all.
        Directory.Exists(Path.Combine(Upper, "etc")).ShouldBeFalse();
    }

    [Fact]
    public async Task An_etc_that_is_a_symlink_fails_the_start_naming_the_path_and_errno_and_nothing_is_written_through_it()
    {
        Directory.CreateDirectory(Path.Combine(Lower, "srv"));
        File.CreateSymbolicLink(Path.Combine(Lower, "etc"), "srv");

        var e = await Should.ThrowAsync<GuestStartException>(() => RunGuestAsync("true", Resolv));

        e.Message.ShouldContain("write /etc/resolv.conf: /etc is a symbolic link, not followed");
        e.Message.ShouldContain("ELOOP");
        Directory.EnumerateFileSystemEntries(Path.Combine(Lower, "srv")).ShouldBeEmpty();
        Directory.Exists(Path.Combine(Upper, "srv")).ShouldBeFalse();
    }
}
