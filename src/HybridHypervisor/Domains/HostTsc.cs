using System.Globalization;
using System.Text.RegularExpressions;

namespace HybridHypervisor.Domains;

/// <summary>
/// The host's TSC rate in kHz, passed to TCG domains as tsc_early_khz: on microvm there is no PIT, HPET or PM timer to
/// calibrate against, and without it about a third of boots hang in early TSC calibration. Sources in order: sysfs
/// (some kernels), the kernel log's calibration lines, /proc/cpuinfo's "cpu MHz" (the same order as
/// images/kernel/boot-test.sh). Read once per agent.
/// </summary>
public static partial class HostTsc
{
    private static readonly Lazy<long?> Cached = new(Read);

    public static long? Khz => Cached.Value;

    private static long? Read()
    {
        try
        {
            var sysfs = "/sys/devices/system/cpu/cpu0/tsc_freq_khz";
            if (File.Exists(sysfs) && long.TryParse(File.ReadAllText(sysfs).Trim(), CultureInfo.InvariantCulture, out var khz)) return khz;
        }
        catch (IOException)
        {
        }
        var (code, log, _) = Vserver.Isolation.Processes.HostProgram.TryRun("dmesg", []);
        if (code == 0 && FromKernelLog(log) is { } fromLog) return fromLog;
        try
        {
            return FromCpuinfo(File.ReadAllText("/proc/cpuinfo"));
        }
        catch (IOException)
        {
            return null;
        }
    }

    public static long? FromKernelLog(string log)
    {
        var refined = RefinedLine().Matches(log);
        if (refined.Count > 0) return MhzToKhz(refined[^1].Groups[1].Value);
        var detected = DetectedLine().Matches(log);
        return detected.Count > 0 ? MhzToKhz(detected[^1].Groups[1].Value) : null;
    }

    public static long? FromCpuinfo(string cpuinfo)
    {
        var m = CpuMhzLine().Match(cpuinfo);
        return m.Success ? MhzToKhz(m.Groups[1].Value) : null;
    }

    private static long MhzToKhz(string mhz) => (long)Math.Round(decimal.Parse(mhz, CultureInfo.InvariantCulture) * 1000);

    [GeneratedRegex(@"tsc: Refined TSC clocksource calibration: ([0-9.]+) MHz")]
    private static partial Regex RefinedLine();

    [GeneratedRegex(@"tsc: Detected ([0-9.]+) MHz processor")]
    private static partial Regex DetectedLine();

    [GeneratedRegex(@"^cpu MHz\s*:\s*([0-9.]+)", RegexOptions.Multiline)]
    private static partial Regex CpuMhzLine();
}
