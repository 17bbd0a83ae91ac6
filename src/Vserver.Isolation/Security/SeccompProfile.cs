using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Vserver.Isolation.Security;

/// <summary>The low 32 bits of syscall argument <paramref name="Index"/> (0-5) have any bit of <paramref name="Mask"/> set.</summary>
public readonly record struct ArgumentHasAnyBits(int Index, uint Mask);

/// <summary>
/// Refuse <paramref name="Syscall"/> (an x86-64 name from <see cref="Syscalls"/>) with <paramref name="Errno"/>; when
/// <paramref name="When"/> is given, only calls for which it holds. A rule made by <see cref="Notify"/> hands the call
/// to the filter's listener instead.
/// </summary>
public sealed record SeccompRule(string Syscall, int Errno, ArgumentHasAnyBits? When = null)
{
    /// <summary>SECCOMP_RET_USER_NOTIF: the call waits until whoever holds the filter's listener fd (vsinit's monitor)
    /// answers it; with no listener the kernel fails it with ENOSYS.</summary>
    public bool ToListener { get; private init; }

    /// <summary>Every call of <paramref name="syscall"/> goes to the filter's listener.</summary>
    public static SeccompRule Notify(string syscall) => new(syscall, 0) { ToListener = true };
}

/// <summary>
/// A seccomp filter as data: calls from another ABI and the listed syscalls get an errno (or go to the listener),
/// everything else is allowed.
/// <see cref="Compile"/> turns it into the classic BPF program that seccomp(SECCOMP_SET_MODE_FILTER) takes.
/// </summary>
public sealed record SeccompProfile
{
    public const int EPERM = 1, ENOSYS = 38;

    private const uint CloneNewUser = 0x10000000, OpenTreeClone = 1;

    /// <summary>Refused for every guest: they reach the shared kernel, its clock or other users' data.</summary>
    private static readonly string[] AlwaysDenied =
    [
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
        "query_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "open_by_handle_at", "swapon", "swapoff",
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm",
        "lookup_dcookie", "uselib", "nfsservctl",
    ];

    /// <summary>
    /// The new mount API. ENOSYS makes libmount and friends fall back to mount(2), which the kernel checks against the
    /// guest's user namespace.
    /// </summary>
    private static readonly string[] NewMountApi = ["fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "mount_setattr"];

    /// <summary>Checks every rule: a known syscall, an errno the kernel passes on, an argument test that can match.</summary>
    public SeccompProfile(IEnumerable<SeccompRule> rules)
    {
        List<SeccompRule> list = [.. rules];
        foreach (SeccompRule rule in list)
        {
            ArgumentNullException.ThrowIfNull(rule);
            if (!Syscalls.TryGetNumber(rule.Syscall, out _))
            {
                throw new ArgumentException($"no x86-64 number known for syscall \"{rule.Syscall}\"", nameof(rules));
            }

            // The kernel caps SECCOMP_RET_DATA at MAX_ERRNO (4095) when it sets the errno; the listener gives its own.
            if (rule.ToListener ? rule.Errno != 0 : rule.Errno is < 1 or > 4095)
            {
                throw new ArgumentOutOfRangeException(nameof(rules), rule.Errno,
                    rule.ToListener ? $"\"{rule.Syscall}\" goes to the listener and takes no errno" : $"errno for \"{rule.Syscall}\" must be 1-4095");
            }

            if (rule.When is { } when && (when.Index is < 0 or > 5 || when.Mask == 0))
            {
                throw new ArgumentOutOfRangeException(nameof(rules), when, $"argument test for \"{rule.Syscall}\" needs an index 0-5 and a mask");
            }
        }

        Rules = list.AsReadOnly();
    }

    /// <summary>Checked in order; a call no rule matches is allowed.</summary>
    public IReadOnlyList<SeccompRule> Rules { get; }

    /// <summary>The syscalls the default profile restricts in this mode, sorted: the names a guest's overrides may give.</summary>
    public static IReadOnlyList<string> Overridable(bool privileged) =>
        [.. DefaultRules(privileged).Select(r => r.Syscall).Order(StringComparer.Ordinal)];

    /// <summary>
    /// sysinfo(2) answered by vsinit's monitor from the guest's meminfo file (spec key <c>meminfo</c>) instead of by the
    /// kernel from the host's memory, so free(1) shows the guest's limit and usage.
    /// </summary>
    public static readonly SeccompRule SysinfoToMonitor = SeccompRule.Notify("sysinfo");

    /// <summary>
    /// The profile every guest runs under, without the rules for the syscalls in <paramref name="allow"/>. Privileged
    /// guests are real root with a reduced capability set, so they also may not make a user namespace (which would hand
    /// them a full set); unprivileged guests are already in one and may, but lose userfaultfd. With
    /// <paramref name="sysinfoToMonitor"/>, <see cref="SysinfoToMonitor"/> too: only for guests whose monitor listens,
    /// since without a listener the kernel fails the call.
    /// </summary>
    /// <exception cref="ArgumentException">A name in <paramref name="allow"/> is not one the profile restricts.</exception>
    public static SeccompProfile Default(bool privileged, IReadOnlyCollection<string> allow, bool sysinfoToMonitor = false)
    {
        IReadOnlyList<string> overridable = Overridable(privileged);
        foreach (string name in allow)
        {
            if (!overridable.Contains(name, StringComparer.Ordinal))
            {
                throw new ArgumentException(
                    $"cannot allow syscall \"{name}\": not one the filter refuses; one of: {string.Join(", ", overridable)}");
            }
        }

        IEnumerable<SeccompRule> rules = DefaultRules(privileged).Where(r => !allow.Contains(r.Syscall, StringComparer.Ordinal));
        return new SeccompProfile(sysinfoToMonitor ? rules.Append(SysinfoToMonitor) : rules);
    }

    private static IEnumerable<SeccompRule> DefaultRules(bool privileged)
    {
        foreach (string name in AlwaysDenied)
        {
            yield return new SeccompRule(name, EPERM);
        }

        if (!privileged)
        {
            yield return new SeccompRule("userfaultfd", EPERM);
        }

        foreach (string name in NewMountApi)
        {
            yield return new SeccompRule(name, ENOSYS);
        }

        // Plain open_tree only returns an O_PATH fd; with OPEN_TREE_CLONE it makes a detached mount for move_mount.
        yield return new SeccompRule("open_tree", ENOSYS, new ArgumentHasAnyBits(2, OpenTreeClone));

        if (privileged)
        {
            yield return new SeccompRule("unshare", EPERM, new ArgumentHasAnyBits(0, CloneNewUser));
            yield return new SeccompRule("clone", EPERM, new ArgumentHasAnyBits(0, CloneNewUser));
            // clone3 keeps its flags in a struct that seccomp cannot read; glibc falls back to clone on ENOSYS.
            yield return new SeccompRule("clone3", ENOSYS);
        }
    }

    // struct seccomp_data (linux/seccomp.h): int nr; u32 arch; u64 instruction_pointer; u64 args[6].
    private const uint NrOffset = 0, ArchOffset = 4, ArgsOffset = 16;
    private const uint AuditArchX86_64 = 0xC000003E, X32SyscallBit = 0x40000000;
    private const uint RetAllow = 0x7fff0000, RetErrno = 0x00050000, RetUserNotif = 0x7fc00000;
    // Opcodes (linux/bpf_common.h): BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGE|BPF_K, BPF_JMP|BPF_JSET|BPF_K, BPF_RET|BPF_K.
    private const ushort LdAbsW = 0x20, JeqK = 0x15, JgeK = 0x35, JsetK = 0x45, RetK = 0x06;
    private const int BpfMaxInstructions = 4096, InstructionSize = 8;

    /// <summary>
    /// The filter as the array of struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } that struct sock_fprog points to
    /// (little-endian, 8 bytes per instruction). Jump offsets count from the next instruction, so every jump here is short.
    /// </summary>
    public byte[] Compile()
    {
        List<(ushort Code, byte Jt, byte Jf, uint K)> program = [];
        void Emit(ushort code, uint k, byte jt = 0, byte jf = 0) => program.Add((code, jt, jf, k));

        // Only native x86-64 calls go on: i386 (int 0x80) numbers its syscalls differently and would miss every rule.
        Emit(LdAbsW, ArchOffset);
        Emit(JeqK, AuditArchX86_64, jt: 1);
        Emit(RetK, RetErrno | EPERM);

        // The syscall number stays in A for the comparisons below.
        Emit(LdAbsW, NrOffset);

        // x32 calls report the x86-64 arch with bit 30 set in nr, so they too would miss every rule. nr -1 is let through
        // (and then allowed): a ptrace tracer writes it to skip a call, and an errno here would overwrite the result the
        // tracer set; without a tracer the kernel answers ENOSYS itself.
        Emit(JgeK, X32SyscallBit, jf: 2);
        Emit(JeqK, uint.MaxValue, jt: 1);
        Emit(RetK, RetErrno | EPERM);

        foreach (SeccompRule rule in Rules)
        {
            // Every name was checked in the constructor.
            uint nr = Syscalls.TryGetNumber(rule.Syscall, out int number) ? (uint)number : throw new UnreachableException();
            uint action = rule.ToListener ? RetUserNotif : RetErrno | (uint)rule.Errno;
            if (rule.When is not { } when)
            {
                // nr matches: the rule's action; else on to the next rule.
                Emit(JeqK, nr, jf: 1);
                Emit(RetK, action);
            }
            else
            {
                // nr matches: load the argument's low 32 bits (little-endian, so they come first) and refuse if any bit of
                // the mask is set; else put nr back in A and go on. A different nr skips the whole block.
                Emit(JeqK, nr, jf: 4);
                Emit(LdAbsW, ArgsOffset + (8 * (uint)when.Index));
                Emit(JsetK, when.Mask, jf: 1);
                Emit(RetK, action);
                Emit(LdAbsW, NrOffset);
            }
        }

        Emit(RetK, RetAllow);

        if (program.Count > BpfMaxInstructions)
        {
            throw new InvalidOperationException($"seccomp program of {program.Count} instructions exceeds BPF_MAXINSNS ({BpfMaxInstructions})");
        }

        byte[] bytes = new byte[program.Count * InstructionSize];
        for (int i = 0; i < program.Count; i++)
        {
            Span<byte> insn = bytes.AsSpan(i * InstructionSize, InstructionSize);
            BinaryPrimitives.WriteUInt16LittleEndian(insn, program[i].Code);
            insn[2] = program[i].Jt;
            insn[3] = program[i].Jf;
            BinaryPrimitives.WriteUInt32LittleEndian(insn[4..], program[i].K);
        }

        return bytes;
    }

    /// <summary>One line for logs, e.g. "arch != x86_64: EPERM; x32: EPERM; bpf: EPERM; ...; otherwise allow".</summary>
    public override string ToString()
    {
        var text = new StringBuilder("arch != x86_64: EPERM; x32: EPERM");
        foreach (SeccompRule rule in Rules)
        {
            text.Append("; ").Append(rule.Syscall);
            if (rule.When is { } when)
            {
                text.Append(CultureInfo.InvariantCulture, $" if arg{when.Index} & 0x{when.Mask:x}");
            }

            text.Append(": ").Append(rule switch
            {
                { ToListener: true } => "to the listener",
                { Errno: EPERM } => "EPERM",
                { Errno: ENOSYS } => "ENOSYS",
                _ => "errno " + rule.Errno.ToString(CultureInfo.InvariantCulture),
            });
        }

        return text.Append("; otherwise allow").ToString();
    }
}
