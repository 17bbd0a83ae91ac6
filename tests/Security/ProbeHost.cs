using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Vserver.IntegrationTests;

namespace Vserver.SecurityTests;

/// <summary>
/// A test host with the probe (probe.c) compiled into its temp dir and two running vservers that have it at /probe:
/// "unpriv" (the default: its own user namespace) and "priv" (--privileged). Plus the host facts the attempts aim at.
/// </summary>
public sealed class ProbeHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    /// <summary>The probe built for this host (static, so it runs in the busybox image).</summary>
    public string Probe => Path.Combine(Host.Dir, "probe");

    /// <summary>A file only the host has: seeing it from a guest means being out.</summary>
    public string Marker => Path.Combine(Host.Dir, "host-only-marker");

    /// <summary>The block device behind the host's / (e.g. /dev/vda) and its numbers.</summary>
    public string RootDevice { get; private set; } = "";
    public string DiskMajor { get; private set; } = "";
    public string DiskMinor { get; private set; } = "";

    /// <summary>The host's UTS namespace as /proc/self/ns/uts names it, e.g. uts:[4026531838].</summary>
    public string HostUts { get; private set; } = "";

    public string AgentPid => Host.AgentPid.ToString(CultureInfo.InvariantCulture);

    /// <summary>The agent's name in /proc/PID/comm, which the probe compares with what it finds.</summary>
    public string AgentComm => File.ReadAllText($"/proc/{Host.AgentPid}/comm").Trim();

    public static string Guest(bool privileged) => privileged ? "priv" : "unpriv";

    public async ValueTask InitializeAsync()
    {
        Host = await TestHost.StartAsync();
        try
        {
            var source = Path.Combine(AppContext.BaseDirectory, "probe.c");
            TestHost.Run("gcc", "-static", "-O2", "-Wall", "-Werror", "-o", Probe, source).ShouldSucceed();
            await File.WriteAllTextAsync(Marker, "only on the host\n");

            RootDevice = TestHost.Run("findmnt", "-no", "SOURCE", "/").ShouldSucceed().Stdout.Trim();
            var numbers = TestHost.Run("stat", "-L", "-c", "%t %T", RootDevice).ShouldSucceed().Stdout.Trim().Split(' ');
            DiskMajor = Convert.ToUInt32(numbers[0], 16).ToString(CultureInfo.InvariantCulture);
            DiskMinor = Convert.ToUInt32(numbers[1], 16).ToString(CultureInfo.InvariantCulture);
            HostUts = new FileInfo("/proc/self/ns/uts").LinkTarget ?? throw new InvalidOperationException("no /proc/self/ns/uts");

            CreateGuest(Guest(privileged: false), privileged: false);
            CreateGuest(Guest(privileged: true), privileged: true);
        }
        catch
        {
            await Host.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();

    /// <summary>Creates and starts a vserver with the probe at /probe, put into its writable layer before the start.</summary>
    public void CreateGuest(string name, bool privileged)
    {
        Host.Vsctl(privileged ? ["create", name, "--privileged"] : ["create", name]).ShouldSucceed();
        var probe = Path.Combine(Host.GuestDir(name), "upper", "probe");
        File.Copy(Probe, probe);
        File.SetUnixFileMode(probe, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
            UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        // The upper layer belongs to the guest's host id range; so must what we put there.
        if (!privileged)
        {
            var owner = HostIdBase(name).ToString(CultureInfo.InvariantCulture);
            TestHost.Run("chown", $"{owner}:{owner}", probe).ShouldSucceed();
        }
        Host.Vsctl("start", name).ShouldSucceed();
    }

    public long HostIdBase(string name) =>
        JsonDocument.Parse(Host.Vsctl("status", name, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("hostIdBase").GetInt64();

    /// <summary>Runs an attempt in the "priv" or "unpriv" vserver; the host must be as it was afterwards.</summary>
    public ProbeResult InGuest(bool privileged, params string[] attempt) => InGuest(Guest(privileged), attempt);

    public ProbeResult InGuest(string guest, params string[] attempt)
    {
        var before = HostState.Capture();
        var result = Host.Vsctl(["exec", guest, "--", "/probe", .. attempt]);
        HostState.Capture().ShouldBeUnchangedFrom(before);
        return ProbeResult.From(result, $"probe {string.Join(' ', attempt)} in {guest}");
    }

    /// <summary>Runs an attempt on the host itself, as root, scratch files in the host's temp dir.</summary>
    public ProbeResult OnHost(params string[] attempt)
    {
        var result = TestHost.RunWith(new Dictionary<string, string> { ["PROBE_TMP"] = Host.Dir }, null, Probe, attempt);
        return ProbeResult.From(result, $"probe {string.Join(' ', attempt)} on the host");
    }

    /// <summary>Starts the probe on the host without waiting for it.</summary>
    public Process StartOnHost(params string[] attempt)
    {
        var psi = new ProcessStartInfo(Probe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in attempt) psi.ArgumentList.Add(a);
        psi.Environment["PROBE_TMP"] = Host.Dir;
        return Process.Start(psi)!;
    }
}

/// <summary>The probe's one line: "refused: STEP; STEP; ..." (exit 0) or "SUCCEEDED: STEP; ..." (exit 1).</summary>
public sealed record ProbeResult(int Code, string Line, string Stderr, string What)
{
    public static ProbeResult From(CommandResult result, string what)
    {
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.Length.ShouldBe(1, $"{what} must print exactly one line\n{result}");
        return new ProbeResult(result.Code, lines[0], result.Stderr, what);
    }

    /// <summary>"what was tried: what happened", in order.</summary>
    public IReadOnlyList<string> Steps => Line.Split(": ", 2) is [_, var rest] ? rest.Split("; ") : [];

    public override string ToString() => $"{What}: exit {Code}\n{Line}\n{Stderr}";
}

public static class ProbeAssertions
{
    public const string EPERM = "Operation not permitted (EPERM)";
    public const string EACCES = "Permission denied (EACCES)";
    public const string ENOENT = "No such file or directory (ENOENT)";
    public const string EROFS = "Read-only file system (EROFS)";
    public const string ESRCH = "No such process (ESRCH)";
    public const string ENOSYS = "Function not implemented (ENOSYS)";
    public const string EINVAL = "Invalid argument (EINVAL)";
    public const string EBUSY = "Device or resource busy (EBUSY)";

    /// <summary>The seccomp filter answered: even a malformed call got its errno.</summary>
    public const string Seccomp = "seccomp filter";

    /// <summary>The file belongs to host root, which the vserver's user namespace does not map: only "other" bits apply.</summary>
    public const string Unmapped = "owner (host root) not mapped into its user namespace";

    /// <summary>Why a capability check said no: a privileged vserver lacks it, root of a user-namespaced one has it only there.</summary>
    public static string Cap(bool privileged, string cap) =>
        privileged ? $"no CAP_{cap}" : $"CAP_{cap} only in the vserver's own user namespace";

    /// <summary>Every step was stopped: exit 0 and a line starting "refused: ".</summary>
    public static ProbeResult ShouldBeRefused(this ProbeResult result)
    {
        result.Line.ShouldStartWith("refused: ", Case.Sensitive, result.ToString());
        result.Code.ShouldBe(0, result.ToString());
        return result;
    }

    /// <summary>The attempt got through: exit 1 and a line starting "SUCCEEDED: ".</summary>
    public static ProbeResult ShouldHaveSucceeded(this ProbeResult result)
    {
        result.Line.ShouldStartWith("SUCCEEDED: ", Case.Sensitive, result.ToString());
        result.Code.ShouldBe(1, result.ToString());
        return result;
    }

    /// <summary>
    /// There is a step starting with <paramref name="step"/>, and every such step says each of <paramref name="expected"/>
    /// (the errno and the defence that gave it).
    /// </summary>
    public static ProbeResult ShouldSay(this ProbeResult result, string step, params string[] expected)
    {
        var matching = result.Steps.Where(s => s.StartsWith(step, StringComparison.Ordinal)).ToList();
        matching.ShouldNotBeEmpty($"no step \"{step}\" in\n{result}");
        foreach (var s in matching)
            foreach (var e in expected)
                s.ShouldContain(e, Case.Sensitive, $"step \"{s}\" should say \"{e}\"\n{result}");
        return result;
    }
}

/// <summary>What an attempt must leave as it was on the host: its name, clock, crash handler, / and device nodes.</summary>
public sealed record HostState(string Hostname, string CorePattern, DateTime BootTimeByClock, string RootEntries, string Devices)
{
    private static readonly string[] DeviceNodes = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

    public static HostState Capture() => new(
        File.ReadAllText("/proc/sys/kernel/hostname").Trim(),
        File.ReadAllText("/proc/sys/kernel/core_pattern").Trim(),
        // The wall clock minus the monotonic clock: moves only when someone sets the clock.
        DateTime.UtcNow - Stopwatch.GetElapsedTime(0),
        string.Join(' ', Directory.EnumerateFileSystemEntries("/").Order(StringComparer.Ordinal)),
        TestHost.Run("stat", ["-c", "%n %a %u:%g", .. DeviceNodes]).ShouldSucceed().Stdout.Trim());

    public void ShouldBeUnchangedFrom(HostState before)
    {
        Hostname.ShouldBe(before.Hostname, "the host's hostname changed");
        CorePattern.ShouldBe(before.CorePattern, "the host's kernel.core_pattern changed");
        (BootTimeByClock - before.BootTimeByClock).Duration().ShouldBeLessThan(TimeSpan.FromSeconds(1), "the host's clock was set");
        RootEntries.ShouldBe(before.RootEntries, "entries in the host's / changed");
        Devices.ShouldBe(before.Devices, "the host's device nodes changed mode or owner");
    }
}
