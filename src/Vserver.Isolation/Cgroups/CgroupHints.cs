using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>Context for errnos the kernel returns from cgroup writes.</summary>
internal static class CgroupHints
{
    public static string? Limit(int errno) => errno switch
    {
        Errno.EBUSY => "usage is above the new limit",
        Errno.EINVAL => "value rejected by the kernel",
        Errno.ENOENT => "the cgroup or its controller file does not exist",
        _ => null,
    };

    public static string? MemorySwap(int errno) => errno switch
    {
        Errno.EBUSY => "usage is above the new limit",
        Errno.EINVAL => "memory.memsw.limit_in_bytes must stay >= memory.limit_in_bytes",
        _ => Limit(errno),
    };

    public static string? Cpu(int errno) => errno switch
    {
        Errno.EINVAL => "quota/period outside the kernel's range or above the parent's CPU limit",
        _ => Limit(errno),
    };

    public static string? AddProcess(int errno) => errno switch
    {
        Errno.ESRCH => "no such process",
        Errno.ENOSPC => "the cpuset has no cpus or mems",
        Errno.EBUSY => "cgroup v2 does not allow processes in a cgroup that enables controllers for its children",
        Errno.EAGAIN => "the pids limit is reached",
        _ => null,
    };
}
