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
        var choice = await AcceleratorProbe.ChooseAsync("qemu-system-x86_64", kernel.Vmlinux, kernel.Initrd, cache, AcceleratorProbe.DefaultTimeout, ct);
        TestContext.Current.TestOutputHelper?.WriteLine($"accelerator: {choice.Display} (probed in {started.ElapsedMilliseconds} ms)");

        if (choice.Kind == AcceleratorKind.Kvm)
        {
            choice.Reason.ShouldBe("a test guest booted under KVM");
            choice.Display.ShouldBe("kvm");
        }
        else
        {
            // These machines: /dev/kvm is PVM and QEMU aborts setting MSR 0x10a; the reason says so.
            choice.Reason.ShouldStartWith("KVM cannot run a guest here: ");
            choice.Display.ShouldStartWith("tcg (emulated: KVM cannot run a guest here");
        }
        choice.BootId.ShouldBe(File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim());
        File.ReadAllText(cache).ShouldContain(choice.BootId);

        // Once per boot of the host: the cached answer comes back without running QEMU at all.
        var again = await AcceleratorProbe.ChooseAsync("/nonexistent/qemu", kernel.Vmlinux, kernel.Initrd, cache, AcceleratorProbe.DefaultTimeout, ct);
        again.ShouldBe(choice);
    }

    [Fact]
    public async Task A_guest_that_never_says_it_booted_means_tcg_with_qemus_complaint()
    {
        var ct = TestContext.Current.CancellationToken;
        var dir = Directory.CreateTempSubdirectory("vsprobe-").FullName;
        try
        {
            var notAKernel = Path.Combine(dir, "vmlinux");
            await File.WriteAllTextAsync(notAKernel, "not a kernel\n", ct);
            var choice = await AcceleratorProbe.ChooseAsync("qemu-system-x86_64", notAKernel, kernel.Initrd,
                Path.Combine(dir, "accelerator.json"), TimeSpan.FromSeconds(10), ct);
            choice.Kind.ShouldBe(AcceleratorKind.Tcg);
            choice.Reason.ShouldStartWith("KVM cannot run a guest here: ");

            var missing = await AcceleratorProbe.ChooseAsync(Path.Combine(dir, "no-qemu"), kernel.Vmlinux, kernel.Initrd,
                Path.Combine(dir, "other.json"), TimeSpan.FromSeconds(10), ct);
            missing.Kind.ShouldBe(AcceleratorKind.Tcg);
            missing.Reason.ShouldContain("cannot be started");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
