using System.Diagnostics;
using HybridHypervisor.Domains;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Domains;

/// <summary>
/// The three kinds of host the accelerator probe meets (see HOST-FACTS): no KVM device at all, a device that opens but
/// cannot run a stock guest (PVM), and working KVM. Whatever this machine is, each variant is exercised here with a
/// stand-in: a device path the test controls and a `qemu` that behaves as QEMU did on such a host. The real probe on the
/// real host is tests/Vserver.IntegrationTests/AcceleratorProbeTests.
/// </summary>
public sealed class AcceleratorProbeVariantTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsprobe-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Cache => Path.Combine(_dir, "accelerator.json");

    /// <summary>A device node stand-in: any file that opens read-write, as /dev/kvm does on a host with KVM.</summary>
    private string OpenableDevice()
    {
        var path = Path.Combine(_dir, "kvm");
        File.WriteAllText(path, "");
        return path;
    }

    /// <summary>A `qemu` that records that it ran and its arguments, then runs <paramref name="body"/>.</summary>
    private string FakeQemu(string body)
    {
        var path = Path.Combine(_dir, "qemu");
        File.WriteAllText(path, $"#!/bin/sh\necho \"$$ $*\" > '{_dir}/qemu.ran'\n{body}\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private string? QemuRan => File.Exists(Path.Combine(_dir, "qemu.ran")) ? File.ReadAllText(Path.Combine(_dir, "qemu.ran")) : null;

    private Task<AcceleratorChoice> ProbeAsync(string qemu, string device, TimeSpan? timeout = null) =>
        AcceleratorProbe.ChooseAsync(qemu, "/k/vmlinux", "/k/initrd", Cache, timeout ?? TimeSpan.FromSeconds(10), device,
            TestContext.Current.CancellationToken);

    [Fact]
    public async Task A_host_without_a_kvm_device_runs_domains_emulated_and_says_there_is_no_device()
    {
        var device = Path.Combine(_dir, "no-such-kvm");
        var qemu = FakeQemu($"echo '{AcceleratorProbe.Marker}'; exec sleep 30");

        var choice = await ProbeAsync(qemu, device);

        choice.Kind.ShouldBe(AcceleratorKind.Tcg);
        choice.Reason.ShouldBe($"no {device} on this host (ENOENT): its kernel offers no KVM, or the machine it runs in passes none through");
        choice.Display.ShouldStartWith($"tcg (emulated: no {device} on this host");
        QemuRan.ShouldBeNull("with no device there is nothing to try QEMU on");
    }

    [Fact]
    public async Task A_device_that_opens_but_cannot_run_a_guest_means_tcg_with_qemus_own_complaint()
    {
        // What QEMU 7.2 printed on the PVM hosts of 2026-11: it opens /dev/kvm, then aborts setting up the vcpu.
        var qemu = FakeQemu("echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x20000c0c' >&2\n" +
                            "echo 'qemu-system-x86_64: ../target/i386/kvm/kvm.c:3137: kvm_buf_set_msrs: Assertion failed.' >&2\nexit 134");

        var choice = await ProbeAsync(qemu, OpenableDevice());

        choice.Kind.ShouldBe(AcceleratorKind.Tcg);
        choice.Reason.ShouldBe("KVM cannot run a guest here: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x20000c0c");
        QemuRan.ShouldNotBeNull().ShouldContain("-accel kvm -cpu host");
    }

    [Fact]
    public async Task A_guest_that_never_boots_under_kvm_means_tcg_naming_the_timeout()
    {
        var choice = await ProbeAsync(FakeQemu("exec sleep 30"), OpenableDevice(), TimeSpan.FromSeconds(1));

        choice.Kind.ShouldBe(AcceleratorKind.Tcg);
        choice.Reason.ShouldBe("KVM cannot run a guest here: a test guest did not boot within 1 s");
        ShouldHaveEnded(QemuRan!);
    }

    [Fact]
    public async Task Working_kvm_is_chosen_once_the_test_guest_says_it_booted_and_the_guest_is_ended()
    {
        // The booted guest would power off by itself; this one stays, so the probe must end it.
        var qemu = FakeQemu($"case \"$*\" in *'-accel kvm -cpu host'*) echo 'booting'; echo '{AcceleratorProbe.Marker}'; exec sleep 30;; esac; exit 1");

        var choice = await ProbeAsync(qemu, OpenableDevice());

        choice.Kind.ShouldBe(AcceleratorKind.Kvm);
        choice.Reason.ShouldBe("a test guest booted under KVM");
        choice.Display.ShouldBe("kvm");
        ShouldHaveEnded(QemuRan!);
        File.ReadAllText(Cache).ShouldContain(choice.BootId);
    }

    [Fact]
    public async Task A_qemu_that_cannot_be_started_means_tcg_naming_the_program()
    {
        var missing = Path.Combine(_dir, "no-qemu");

        var choice = await ProbeAsync(missing, OpenableDevice());

        choice.Kind.ShouldBe(AcceleratorKind.Tcg);
        choice.Reason.ShouldStartWith($"{missing} cannot be started: ");
    }

    [Fact]
    public async Task The_answer_is_kept_for_this_boot_of_the_host_and_not_for_another()
    {
        var first = await ProbeAsync(FakeQemu("exit 1"), Path.Combine(_dir, "no-such-kvm"));

        // Same boot: the cached answer comes back even though the device now opens and QEMU would boot.
        var again = await ProbeAsync(FakeQemu($"echo '{AcceleratorProbe.Marker}'"), OpenableDevice());
        again.ShouldBe(first);

        // A cache written in another boot is not believed.
        File.WriteAllText(Cache, File.ReadAllText(Cache).Replace(first.BootId, "another-boot"));
        var reprobed = await ProbeAsync(FakeQemu($"echo '{AcceleratorProbe.Marker}'; exec sleep 30"), OpenableDevice());
        reprobed.Kind.ShouldBe(AcceleratorKind.Kvm);
    }

    /// <summary>The stand-in QEMU (whose pid the script recorded) is gone after the probe: nothing is left running.</summary>
    private static void ShouldHaveEnded(string ran)
    {
        var pid = int.Parse(ran.Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        var gone = Stopwatch.StartNew();
        while (Directory.Exists($"/proc/{pid}") && File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] != "Z" && gone.Elapsed < TimeSpan.FromSeconds(5))
            Thread.Sleep(20);
        (Directory.Exists($"/proc/{pid}") && File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] != "Z").ShouldBeFalse($"the test QEMU {pid} still runs");
    }
}
