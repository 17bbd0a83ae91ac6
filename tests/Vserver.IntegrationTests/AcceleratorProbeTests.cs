using HybridHypervisor.Domains;

namespace Vserver.IntegrationTests;

public sealed class AcceleratorProbeTests(BuiltKernel kernel)
{
    [Fact]
    public async Task The_probe_boots_a_guest_under_kvm_and_falls_back_to_tcg_when_it_cannot()
    {
        var ct = TestContext.Current.CancellationToken;
        // The same kernel boots under TCG, so a TCG answer below is about KVM, not a broken kernel.
        TestHost.Run("sh", Path.Combine(BuiltKernel.RepoDir, "images", "kernel", "boot-test.sh"), kernel.OutDir).ShouldSucceed();
        var cache = Path.Combine(kernel.Dir, "run", "accelerator.json");

        var started = System.Diagnostics.Stopwatch.StartNew();
        var choice = await AcceleratorProbe.ChooseAsync("qemu-system-x86_64", kernel.Vmlinux, kernel.Initrd, cache, AcceleratorProbe.DefaultTimeout, ct: ct);
        TestContext.Current.TestOutputHelper?.WriteLine($"accelerator: {choice.Display} (probed in {started.ElapsedMilliseconds} ms)");

        // The answer must be true of this host, whichever of the three kinds it is (the variants it is not are
        // exercised with stand-ins in Vserver.Tests' AcceleratorProbeVariantTests).
        if (!File.Exists(AcceleratorProbe.KvmDevice))
        {
            // No device at all (these machines since 2026-12: a microVM guest themselves).
            choice.Kind.ShouldBe(AcceleratorKind.Tcg);
            choice.Reason.ShouldStartWith("no /dev/kvm on this host (ENOENT)");
        }
        else if (choice.Kind == AcceleratorKind.Kvm)
        {
            choice.Reason.ShouldBe("a test guest booted under KVM");
            choice.Display.ShouldBe("kvm");
        }
        else
        {
            // A device that opens but cannot run a stock guest (PVM: QEMU aborts setting MSR 0x10a); the reason says so.
            choice.Reason.ShouldStartWith("KVM cannot run a guest here: ");
            choice.Display.ShouldStartWith("tcg (emulated: KVM cannot run a guest here");
        }
        choice.BootId.ShouldBe(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim());
        File.ReadAllText(cache).ShouldContain(choice.BootId);

        // Once per boot of the host: the cached answer comes back without running QEMU at all.
        var again = await AcceleratorProbe.ChooseAsync("/nonexistent/qemu", kernel.Vmlinux, kernel.Initrd, cache, AcceleratorProbe.DefaultTimeout, ct: ct);
        again.ShouldBe(choice);
    }

    [Fact]
    public async Task A_guest_that_never_says_it_booted_means_tcg_with_qemus_complaint()
    {
        var ct = TestContext.Current.CancellationToken;
        var dir = Directory.CreateTempSubdirectory("vsprobe-").FullName;
        try
        {
            // The real QEMU: with a device that opens (a stand-in where this host has none), it is QEMU's own complaint
            // that rules KVM out, whatever this host is: no KVM module, or a kernel it cannot boot.
            var device = File.Exists(AcceleratorProbe.KvmDevice) ? AcceleratorProbe.KvmDevice : Path.Combine(dir, "kvm");
            if (device != AcceleratorProbe.KvmDevice) await File.WriteAllTextAsync(device, "", ct);
            var notAKernel = Path.Combine(dir, "vmlinux");
            await File.WriteAllTextAsync(notAKernel, "not a kernel\n", ct);
            var choice = await AcceleratorProbe.ChooseAsync("qemu-system-x86_64", notAKernel, kernel.Initrd,
                Path.Combine(dir, "accelerator.json"), TimeSpan.FromSeconds(10), device, ct);
            choice.Kind.ShouldBe(AcceleratorKind.Tcg);
            choice.Reason.ShouldStartWith("KVM cannot run a guest here: ");
            choice.Reason.ShouldNotContain("did not boot within", customMessage: "QEMU's own complaint, not the timeout");

            var missing = await AcceleratorProbe.ChooseAsync(Path.Combine(dir, "no-qemu"), kernel.Vmlinux, kernel.Initrd,
                Path.Combine(dir, "other.json"), TimeSpan.FromSeconds(10), device, ct);
            missing.Kind.ShouldBe(AcceleratorKind.Tcg);
            missing.Reason.ShouldContain("cannot be started");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
