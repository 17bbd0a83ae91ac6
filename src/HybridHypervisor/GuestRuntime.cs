using HybridHypervisor.Domains;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;

namespace HybridHypervisor;

/// <summary>The agent's live view of one guest. Every change happens under <see cref="Lock"/>.</summary>
internal sealed class GuestRuntime(GuestConfig config)
{
    public SemaphoreSlim Lock { get; } = new(1, 1);
    public GuestConfig Config { get; set; } = config;
    /// <summary>The current run, of whichever kind; null while stopped.</summary>
    public IGuestRun? Run { get; set; }
    /// <summary>For what only a vserver has (its cgroup, its init): the current run if this is a vserver.</summary>
    public RunningVserver? Vserver => Run as RunningVserver;
    /// <summary>For what only a domain has (QMP, its balloon, its console): the current run if this is a domain.</summary>
    public RunningDomain? Domain => Run as RunningDomain;
    /// <summary>One `vsctl console` at a time: QEMU's console socket takes one client.</summary>
    public bool ConsoleAttached { get; set; }
    public bool Paused => Run?.Paused ?? false;
    public bool StopRequested { get; set; }
    /// <summary>The restart policy will start the guest again after a back-off delay; a stop cancels it.</summary>
    public bool RestartPending { get; set; }
    public GuestExit? LastExit { get; set; }
    public int RestartCount { get; set; }
    public bool Removed { get; set; }
    private (DateTimeOffset At, TimeSpan Cpu)? _cpuLast, _cpuBefore;

    /// <summary>The sampler's last reading of a running vserver's cgroup (once a second): what a list shows.</summary>
    public UsageSample? LastSample { get; set; }

    /// <summary>The sampler's look at the guest's CPU time (kept: the last two).</summary>
    public void RecordCpu(DateTimeOffset at, TimeSpan cpu)
    {
        _cpuBefore = _cpuLast;
        _cpuLast = (at, cpu);
    }

    /// <summary>CPU% (100 = one core busy) from the sampler's last look until <paramref name="now"/>, or from the look
    /// before when the last one is too recent to say anything.</summary>
    public double CpuPercent(DateTimeOffset now, TimeSpan cpu)
    {
        var sample = _cpuLast is { } last && now - last.At >= TimeSpan.FromMilliseconds(250) ? last : _cpuBefore ?? _cpuLast;
        if (sample is not { } s || now - s.At <= TimeSpan.Zero) return 0;
        return Math.Max(0, (cpu - s.Cpu).TotalSeconds / (now - s.At).TotalSeconds * 100);
    }
    /// <summary>Completed when the current run ends; replaced at each start.</summary>
    public TaskCompletionSource RunEnded { get; set; } = Completed();

    public bool IsRunning => Run is not null;

    public GuestState State => !IsRunning ? (LastExit is { Crashed: true } ? GuestState.Crashed : GuestState.Stopped)
        : Paused ? GuestState.Paused : GuestState.Running;

    public static TaskCompletionSource Completed()
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        tcs.SetResult();
        return tcs;
    }
}

/// <summary>A cgroup reading of one run of a vserver: a reading of an earlier run says nothing of the current one.</summary>
internal sealed record UsageSample(RunningVserver Run, Vserver.Isolation.Cgroups.CgroupStats Stats);
