using System.Collections.Frozen;

namespace Vserver.Isolation.Security;

/// <summary>
/// x86-64 system call numbers (asm/unistd_64.h) of the calls <see cref="SeccompProfile.Default"/> restricts or hands to
/// the listener.
/// A unit test checks them against the header of the build machine.
/// </summary>
public static class Syscalls
{
    private static readonly FrozenDictionary<string, int> Numbers = new Dictionary<string, int>
    {
        ["clone"] = 56,
        ["sysinfo"] = 99,
        ["uselib"] = 134,
        ["adjtimex"] = 159,
        ["acct"] = 163,
        ["settimeofday"] = 164,
        ["swapon"] = 167,
        ["swapoff"] = 168,
        ["iopl"] = 172,
        ["ioperm"] = 173,
        ["create_module"] = 174,
        ["init_module"] = 175,
        ["delete_module"] = 176,
        ["get_kernel_syms"] = 177,
        ["query_module"] = 178,
        ["quotactl"] = 179,
        ["nfsservctl"] = 180,
        ["lookup_dcookie"] = 212,
        ["clock_settime"] = 227,
        ["kexec_load"] = 246,
        ["add_key"] = 248,
        ["request_key"] = 249,
        ["keyctl"] = 250,
        ["unshare"] = 272,
        ["perf_event_open"] = 298,
        ["open_by_handle_at"] = 304,
        ["clock_adjtime"] = 305,
        ["finit_module"] = 313,
        ["kexec_file_load"] = 320,
        ["bpf"] = 321,
        ["userfaultfd"] = 323,
        ["open_tree"] = 428,
        ["move_mount"] = 429,
        ["fsopen"] = 430,
        ["fsconfig"] = 431,
        ["fsmount"] = 432,
        ["fspick"] = 433,
        ["clone3"] = 435,
        ["mount_setattr"] = 442,
        ["quotactl_fd"] = 443,
    }.ToFrozenDictionary(StringComparer.Ordinal);

    private static readonly IReadOnlyCollection<string> NameList = [.. Numbers.Keys.Order(StringComparer.Ordinal)];

    /// <summary>Every name in the table, sorted.</summary>
    public static IReadOnlyCollection<string> Names => NameList;

    /// <summary>The x86-64 number of <paramref name="name"/>; false when the name is not in the table.</summary>
    public static bool TryGetNumber(string name, out int nr) => Numbers.TryGetValue(name, out nr);
}
