using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace HybridHypervisor.Domains;

[JsonConverter(typeof(JsonStringEnumConverter<AcceleratorKind>))]
public enum AcceleratorKind { Kvm, Tcg }

/// <summary>What domains run on, and why; valid for one boot of the host.</summary>
public sealed record AcceleratorChoice(AcceleratorKind Kind, string Reason, string BootId)
{
    /// <summary>For `vsctl info` and `vsctl list`: emulation is always reported as such.</summary>
    public string Display => Kind == AcceleratorKind.Kvm ? "kvm" : $"tcg (emulated: {Reason})";
}

/// <summary>
/// Finds out whether KVM can really run a guest here by booting one: /dev/kvm opening proves nothing (on PVM hosts it
/// opens, QEMU then aborts or stock kernels crash). The test guest is the domain kernel with its initramfs and no
/// root disk: it prints <see cref="Marker"/> once the kernel and its userspace run, then powers off. The answer is
/// kept in a cache file together with the host's boot id, so it is probed once per boot of the host.
/// </summary>
public static class AcceleratorProbe
{
    public const string Marker = "vserver-initramfs: modules loaded";

    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    /// <summary>The device QEMU's <c>-accel kvm</c> opens.</summary>
    public const string KvmDevice = "/dev/kvm";

    /// <param name="kvmDevice">The device checked before QEMU is tried: <see cref="KvmDevice"/>, or (in tests) a stand-in.</param>
    public static async Task<AcceleratorChoice> ChooseAsync(string qemu, string vmlinux, string initrd, string cacheFile,
        TimeSpan timeout, string kvmDevice = KvmDevice, CancellationToken ct = default)
    {
        var bootId = (await File.ReadAllTextAsync("/proc/sys/kernel/random/boot_id", ct)).Trim();
        if (ReadCache(cacheFile, bootId) is { } cached) return cached;
        var choice = await ProbeAsync(qemu, vmlinux, initrd, kvmDevice, bootId, timeout, ct);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(cacheFile))!);
        Vserver.Isolation.Storage.AtomicFile.WriteAllText(cacheFile, JsonSerializer.Serialize(choice, ProbeJson.Default.AcceleratorChoice) + "\n");
        return choice;
    }

    private static AcceleratorChoice? ReadCache(string cacheFile, string bootId)
    {
        try
        {
            if (Vserver.Isolation.Storage.StateFile.TryReadAllBytes(Path.GetDirectoryName(Path.GetFullPath(cacheFile))!, cacheFile) is not { } bytes) return null;
            var cached = JsonSerializer.Deserialize(bytes, ProbeJson.Default.AcceleratorChoice);
            return cached is not null && cached.BootId == bootId && !string.IsNullOrEmpty(cached.Reason) ? cached : null;
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Why the KVM device rules KVM out before QEMU is tried, or null when it opens. Three kinds of host are
    /// seen: no device at all (a machine that is itself a microVM), a device that opens but cannot run a stock guest
    /// (PVM; only the test boot tells), and working KVM.</summary>
    public static string? DeviceRefusal(string kvmDevice)
    {
        if (!File.Exists(kvmDevice))
            return $"no {kvmDevice} on this host (ENOENT): its kernel offers no KVM, or the machine it runs in passes none through";
        try
        {
            using var kvm = File.Open(kvmDevice, FileMode.Open, FileAccess.ReadWrite);
            return null;
        }
        catch (UnauthorizedAccessException e)
        {
            return $"{kvmDevice} cannot be opened (EACCES: {e.Message}); the agent must run as root or in group kvm";
        }
        catch (IOException e)
        {
            return $"{kvmDevice} cannot be opened: {e.Message}";
        }
    }

    private static async Task<AcceleratorChoice> ProbeAsync(string qemu, string vmlinux, string initrd, string kvmDevice, string bootId,
        TimeSpan timeout, CancellationToken ct)
    {
        AcceleratorChoice Tcg(string why) => new(AcceleratorKind.Tcg, why, bootId);
        if (DeviceRefusal(kvmDevice) is { } refusal) return Tcg(refusal);

        var psi = new ProcessStartInfo(qemu)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        foreach (var arg in new[]
                 {
                     "-M", "microvm,acpi=on", "-accel", "kvm", "-cpu", "host", "-m", "128", "-smp", "1", "-nodefaults",
                     "-no-user-config", "-nographic", "-serial", "stdio", "-no-reboot", "-kernel", vmlinux, "-initrd", initrd,
                     "-append", "console=ttyS0 panic=-1 quiet",
                 })
            psi.ArgumentList.Add(arg);
        Process process;
        try
        {
            process = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return Tcg($"{qemu} cannot be started: {e.Message}");
        }
        using (process)
        {
            var stdout = new StringBuilder();
            var sawMarker = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            process.OutputDataReceived += (_, e) =>
            {
                if (e.Data is null) return;
                lock (stdout) stdout.AppendLine(e.Data);
                if (e.Data.Contains(Marker, StringComparison.Ordinal)) sawMarker.TrySetResult();
            };
            process.BeginOutputReadLine();
            var stderr = process.StandardError.ReadToEndAsync(ct);
            process.StandardInput.Close();
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
            deadline.CancelAfter(timeout);
            var exited = process.WaitForExitAsync(deadline.Token);
            try
            {
                await Task.WhenAny(sawMarker.Task, exited);
            }
            finally
            {
                if (!process.HasExited) process.Kill();
                await process.WaitForExitAsync(CancellationToken.None);
            }
            if (sawMarker.Task.IsCompleted) return new AcceleratorChoice(AcceleratorKind.Kvm, "a test guest booted under KVM", bootId);
            ct.ThrowIfCancellationRequested();
            var complaint = (await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .FirstOrDefault(l => l.Length > 0);
            return Tcg(complaint is not null
                ? $"KVM cannot run a guest here: {complaint}"
                : $"KVM cannot run a guest here: a test guest did not boot within {timeout.TotalSeconds:0} s");
        }
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, WriteIndented = true)]
[JsonSerializable(typeof(AcceleratorChoice))]
internal sealed partial class ProbeJson : JsonSerializerContext;
