using System.Net;
using HybridHypervisor.Domains;
using Shouldly;
using Vserver.Isolation.Network;
using Vserver.Isolation.Processes;
using Xunit;

namespace Vserver.Tests.Domains;

/// <summary>
/// The initramfs' side of vserver.dns, without booting: the command line parsing and the resolv.conf writer are cut out
/// of images/kernel/build.sh's /init and run by busybox sh (the initramfs' shell) on a temp root, fed the kernel command
/// line <see cref="QemuCommand"/> makes. The file must be what <see cref="ResolvConf.Render"/> gives a vserver, and no
/// link the guest planted may be written through. DomainTests boots the whole thing.
/// </summary>
public sealed class InitramfsResolvTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsinitramfs-").FullName;
    private string Root => Path.Combine(_dir, "newroot");
    private string Etc => Path.Combine(Root, "etc");

    public InitramfsResolvTests() => Directory.CreateDirectory(Root);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Init()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Vserver.sln"))) dir = dir.Parent;
        var script = File.ReadAllText(Path.Combine(dir.ShouldNotBeNull("the repository above the test binaries").FullName, "images", "kernel", "build.sh"));
        var start = script.IndexOf("cat > \"$IR/init\" <<'EOF'\n", StringComparison.Ordinal);
        start.ShouldBeGreaterThan(0, "build.sh writes /init from a here-document");
        start = script.IndexOf('\n', start) + 1;
        return script[start..script.IndexOf("\nEOF\n", start, StringComparison.Ordinal)];
    }

    /// <summary>Lines of /init from the first that starts with <paramref name="first"/> to the next that is <paramref name="last"/>.</summary>
    private static string Cut(string init, string first, string last)
    {
        var lines = init.Split('\n');
        var from = Array.FindIndex(lines, l => l.StartsWith(first, StringComparison.Ordinal));
        from.ShouldBeGreaterThanOrEqualTo(0, $"/init has a line starting '{first}'");
        var to = Array.FindIndex(lines, from + 1, l => l == last);
        to.ShouldBeGreaterThan(from, $"/init has a '{last}' after '{first}'");
        return string.Join('\n', lines[from..(to + 1)]);
    }

    /// <summary>Runs the parsing and the writer of /init with this kernel command line; the exit code and what it said.</summary>
    private (int Code, string Output) RunInit(string cmdline)
    {
        var init = Init();
        var cmdlineFile = Path.Combine(_dir, "cmdline");
        File.WriteAllText(cmdlineFile, cmdline + "\n");
        var script = string.Join('\n',
            Cut(init, "NL=", "'"),
            "fail() { echo \"vserver-initramfs: ERROR: $*\"; exit 1; }",
            Cut(init, "root= fstype=", "set +f").Replace("/proc/cmdline", cmdlineFile, StringComparison.Ordinal),
            Cut(init, "if [ -n \"$resolv\" ]; then", "fi").Replace("/newroot", Root, StringComparison.Ordinal)) + "\n";
        var (code, stdout, stderr) = HostProgram.TryRun("/bin/busybox", ["sh", "-c", script]);
        return (code, stdout + stderr);
    }

    private static string CommandLine(ResolvConf? resolv) => QemuCommand.KernelCommandLine(new DomainLaunch
    {
        Name = "web1", Accelerator = AcceleratorKind.Kvm, Vmlinux = "/k/vmlinux", Initrd = "/k/initrd.img", Vcpus = 1,
        MemoryBytes = 256L << 20, Disk = "/d", Tap = "vt0", Mac = "52:54:00:aa:bb:cc", Address = "10.88.0.5/16",
        Gateway = "10.88.0.1", QmpSocket = "/q", ConsoleSocket = "/c", ConsoleLog = "/l", AgentSocket = "/a", PidFile = "/p",
        Resolv = resolv,
    });

    private static readonly ResolvConf Resolv =
        new([IPAddress.Parse("10.88.0.1"), IPAddress.Parse("2001:db8::53")], "a.example b.example");

    [Fact]
    public void A_planted_symlink_is_replaced_by_a_regular_file_saying_what_a_vserver_is_told_and_its_target_is_untouched()
    {
        Directory.CreateDirectory(Etc);
        var outside = Path.Combine(_dir, "outside");
        File.WriteAllText(outside, "host file\n");
        File.CreateSymbolicLink(Path.Combine(Etc, "resolv.conf"), outside);

        var (code, output) = RunInit(CommandLine(Resolv));

        code.ShouldBe(0, output);
        output.ShouldContain("vserver-initramfs: resolv.conf nameservers 10.88.0.1,2001:db8::53 search a.example,b.example");
        var conf = new FileInfo(Path.Combine(Etc, "resolv.conf"));
        conf.LinkTarget.ShouldBeNull();
        File.ReadAllText(conf.FullName).ShouldBe(Resolv.Render());
        File.GetUnixFileMode(conf.FullName).ShouldBe(
            UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        File.ReadAllText(outside).ShouldBe("host file\n");
    }

    [Fact]
    public void A_root_without_etc_gets_one_and_no_servers_still_makes_a_file()
    {
        var resolv = new ResolvConf([], null);

        var (code, output) = RunInit(CommandLine(resolv));

        code.ShouldBe(0, output);
        File.ReadAllText(Path.Combine(Etc, "resolv.conf")).ShouldBe(resolv.Render());
        File.GetUnixFileMode(Etc).ShouldBe((UnixFileMode)0b111_101_101);
    }

    [Fact]
    public void Without_vserver_dns_the_guests_own_file_is_left_alone()
    {
        Directory.CreateDirectory(Etc);
        File.WriteAllText(Path.Combine(Etc, "resolv.conf"), "nameserver 192.0.2.53\n");

        var (code, output) = RunInit(CommandLine(null));

        code.ShouldBe(0, output);
        output.ShouldNotContain("resolv.conf");
        File.ReadAllText(Path.Combine(Etc, "resolv.conf")).ShouldBe("nameserver 192.0.2.53\n");
    }

    [Fact]
    public void An_etc_that_is_a_symlink_fails_the_boot_with_a_message_and_nothing_is_written_through_it()
    {
        var elsewhere = Directory.CreateDirectory(Path.Combine(_dir, "elsewhere")).FullName;
        Directory.CreateSymbolicLink(Etc, elsewhere);

        var (code, output) = RunInit(CommandLine(Resolv));

        code.ShouldBe(1);
        output.ShouldContain("vserver-initramfs: ERROR: vserver.dns: /etc on root=/dev/vda is a symbolic link; not writing resolv.conf through it");
        Directory.EnumerateFileSystemEntries(elsewhere).ShouldBeEmpty();
    }
}
