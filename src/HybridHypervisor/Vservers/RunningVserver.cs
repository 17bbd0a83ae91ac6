using HybridHypervisor.Guests;
using Vserver.Isolation.Cgroups;
using Vserver.Isolation.Processes;

namespace HybridHypervisor.Vservers;

/// <summary>A running vserver as the agent holds it: its monitor, its init and its cgroup.</summary>
public sealed class RunningVserver(ProcessHandle monitor, ProcessHandle? init, int initPid, ICgroup cgroup, DateTimeOffset startedAt)
    : IGuestRun, IDisposable
{
    public ProcessHandle Monitor { get; } = monitor;
    public ProcessHandle? Init { get; } = init;
    public int InitPid { get; } = initPid;
    public ICgroup Cgroup { get; } = cgroup;
    public DateTimeOffset StartedAt { get; } = startedAt;
    public int Pid => InitPid;
    /// <summary>The cgroup is frozen.</summary>
    public bool Paused { get; set; }
    /// <summary>The monitor ends right after init: it has written the exit file by then.</summary>
    public Task Exited => Monitor.Exited;
    /// <summary>A stop found every service gone and init alone, then ended init: its SIGKILL is no crash.</summary>
    public bool ServicesDoneAtStop { get; set; }

    public void Dispose()
    {
        Monitor.Dispose();
        Init?.Dispose();
    }
}
