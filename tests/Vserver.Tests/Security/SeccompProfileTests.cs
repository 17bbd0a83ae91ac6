using Shouldly;
using Vserver.Isolation.Security;
using Xunit;
using static Vserver.Tests.Security.ClassicBpf;

namespace Vserver.Tests.Security;

/// <summary>The default profile, compiled and run through <see cref="ClassicBpf"/> the way the kernel would run it.</summary>
public sealed class SeccompProfileTests
{
    /// <summary>x86-64 numbers of calls the profile leaves alone; checked against the header in <see cref="SyscallTableTests"/>.</summary>
    internal static readonly Dictionary<string, int> Unrestricted = new()
    {
        ["read"] = 0, ["write"] = 1, ["getpid"] = 39, ["execve"] = 59, ["mount"] = 165, ["reboot"] = 169,
    };

    private static readonly string[] AlwaysDenied =
    [
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms",
        "query_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "open_by_handle_at", "swapon", "swapoff",
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm",
        "lookup_dcookie", "uselib", "nfsservctl",
    ];

    private static readonly string[] NewMountApi = ["fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "mount_setattr"];

    private const uint Eperm = RetErrno | 1, Enosys = RetErrno | 38, RetUserNotif = 0x7fc00000;
    private const ulong CloneNewUser = 0x10000000, CloneNewNs = 0x00020000, SigChld = 17;

    private static readonly byte[] Unprivileged = SeccompProfile.Default(privileged: false, []).Compile();
    private static readonly byte[] Privileged = SeccompProfile.Default(privileged: true, []).Compile();

    private static int Nr(string name) =>
        Syscalls.TryGetNumber(name, out int nr) ? nr : Unrestricted[name];

    private static uint Call(byte[] program, string name, params ulong[] args) => Run(program, Nr(name), AuditArchX86_64, args);

    /// <summary>Every native call, with a few argument sets, gets the same answer from both programs, except
    /// <paramref name="name"/>, which <paramref name="changed"/> answers with <paramref name="answer"/>.</summary>
    private static void ShouldDifferOnlyIn(byte[] plain, byte[] changed, string name, uint answer, string context)
    {
        ulong[][] argSets = [[], [CloneNewUser], [0, 0, 1], [ulong.MaxValue, ulong.MaxValue, ulong.MaxValue]];
        for (int nr = 0; nr < 512; nr++)
        {
            foreach (ulong[] args in argSets)
            {
                uint expected = nr == Nr(name) ? answer : Run(plain, nr, AuditArchX86_64, args);
                Run(changed, nr, AuditArchX86_64, args).ShouldBe(expected, $"nr {nr}, {context}");
            }
        }
    }

    [Fact]
    public void Ordinary_calls_are_allowed()
    {
        foreach (byte[] program in new[] { Unprivileged, Privileged })
        {
            foreach (string name in Unrestricted.Keys)
            {
                Call(program, name).ShouldBe(RetAllow, name);
            }
        }
    }

    [Fact]
    public void Kernel_wide_calls_are_refused_with_EPERM_in_both_modes()
    {
        foreach (string name in AlwaysDenied)
        {
            Call(Unprivileged, name).ShouldBe(Eperm, name);
            Call(Privileged, name).ShouldBe(Eperm, name);
        }
    }

    [Fact]
    public void Userfaultfd_is_refused_to_unprivileged_guests_only()
    {
        Call(Unprivileged, "userfaultfd").ShouldBe(Eperm);
        Call(Privileged, "userfaultfd").ShouldBe(RetAllow);
    }

    [Fact]
    public void New_mount_api_answers_ENOSYS_so_callers_fall_back_to_mount()
    {
        foreach (string name in NewMountApi)
        {
            Call(Unprivileged, name).ShouldBe(Enosys, name);
            Call(Privileged, name).ShouldBe(Enosys, name);
        }

        foreach (byte[] program in new[] { Unprivileged, Privileged })
        {
            // open_tree(dfd, path, flags): only OPEN_TREE_CLONE (here with AT_RECURSIVE) makes a mount.
            Call(program, "open_tree", 3, 0x1000, 1).ShouldBe(Enosys);
            Call(program, "open_tree", 3, 0x1000, 1 | 0x8000).ShouldBe(Enosys);
            Call(program, "open_tree", 3, 0x1000, 0).ShouldBe(RetAllow);
            Call(program, "open_tree", 3, 0x1000, 0x80000).ShouldBe(RetAllow);
            // The test sees the right argument: flags in another argument do not count.
            Call(program, "open_tree", 1, 1, 0).ShouldBe(RetAllow);
        }
    }

    [Fact]
    public void Privileged_guests_cannot_make_a_user_namespace()
    {
        Call(Privileged, "unshare", CloneNewUser | CloneNewNs).ShouldBe(Eperm);
        Call(Privileged, "unshare", CloneNewNs).ShouldBe(RetAllow);
        Call(Privileged, "clone", CloneNewUser | SigChld).ShouldBe(Eperm);
        Call(Privileged, "clone", SigChld).ShouldBe(RetAllow);
        Call(Privileged, "clone3").ShouldBe(Enosys);
    }

    [Fact]
    public void Unprivileged_guests_can_nest_user_namespaces()
    {
        Call(Unprivileged, "unshare", CloneNewUser).ShouldBe(RetAllow);
        Call(Unprivileged, "clone", CloneNewUser | SigChld).ShouldBe(RetAllow);
        Call(Unprivileged, "clone3").ShouldBe(RetAllow);
    }

    [Fact]
    public void Other_abis_are_refused()
    {
        foreach (byte[] program in new[] { Unprivileged, Privileged })
        {
            const uint AuditArchI386 = 0x40000003, AuditArchAarch64 = 0xC00000B7;
            Run(program, 20, AuditArchI386).ShouldBe(Eperm); // getpid on i386
            Run(program, 39, AuditArchI386).ShouldBe(Eperm);
            Run(program, 172, AuditArchAarch64).ShouldBe(Eperm); // getpid on arm64
            Run(program, 0x40000000 + 39, AuditArchX86_64).ShouldBe(Eperm); // x32 getpid
            Run(program, 0x40000000 + 101, AuditArchX86_64).ShouldBe(Eperm); // x32 ptrace
        }
    }

    [Fact]
    public void Syscall_minus_one_is_let_through_for_tracers()
    {
        Run(Unprivileged, -1, AuditArchX86_64).ShouldBe(RetAllow);
        Run(Privileged, -1, AuditArchX86_64).ShouldBe(RetAllow);
        Run(Privileged, -2, AuditArchX86_64).ShouldBe(Eperm);
    }

    [Fact]
    public void An_override_allows_that_call_and_changes_nothing_else()
    {
        foreach (bool privileged in new[] { false, true })
        {
            byte[] plain = privileged ? Privileged : Unprivileged;
            ShouldDifferOnlyIn(plain, SeccompProfile.Default(privileged, ["keyctl"]).Compile(), "keyctl", RetAllow, $"privileged {privileged}");
            Call(plain, "keyctl").ShouldBe(Eperm);
        }
    }

    [Fact]
    public void Overrides_of_conditional_rules_lift_the_whole_rule()
    {
        byte[] program = SeccompProfile.Default(privileged: true, ["unshare", "clone3", "open_tree"]).Compile();

        Call(program, "unshare", CloneNewUser).ShouldBe(RetAllow);
        Call(program, "clone3").ShouldBe(RetAllow);
        Call(program, "open_tree", 3, 0x1000, 1).ShouldBe(RetAllow);
        Call(program, "clone", CloneNewUser).ShouldBe(Eperm);
    }

    [Fact]
    public void Overrides_must_name_a_call_the_profile_restricts_in_that_mode()
    {
        var error = Should.Throw<ArgumentException>(() => SeccompProfile.Default(privileged: false, ["keyctl", "foo"]));
        error.Message.ShouldBe(
            "cannot allow syscall \"foo\": not one the filter refuses; one of: "
            + string.Join(", ", SeccompProfile.Overridable(privileged: false)));
        error.Message.ShouldStartWith("cannot allow syscall \"foo\": not one the filter refuses; one of: acct, add_key, ");

        Should.Throw<ArgumentException>(() => SeccompProfile.Default(privileged: true, ["userfaultfd"]))
            .Message.ShouldStartWith("cannot allow syscall \"userfaultfd\":");
        Should.Throw<ArgumentException>(() => SeccompProfile.Default(privileged: false, ["clone3"]))
            .Message.ShouldStartWith("cannot allow syscall \"clone3\":");
        Should.Throw<ArgumentException>(() => SeccompProfile.Default(privileged: false, ["getpid"]));
    }

    [Fact]
    public void Overridable_lists_the_restricted_calls_of_each_mode_sorted()
    {
        IReadOnlyList<string> unprivileged = SeccompProfile.Overridable(privileged: false);
        IReadOnlyList<string> privileged = SeccompProfile.Overridable(privileged: true);

        unprivileged.ShouldBe([.. AlwaysDenied.Concat(NewMountApi).Append("open_tree").Append("userfaultfd").Order(StringComparer.Ordinal)]);
        privileged.ShouldBe([.. AlwaysDenied.Concat(NewMountApi).Concat(["open_tree", "unshare", "clone", "clone3"]).Order(StringComparer.Ordinal)]);

        // The syscall table holds exactly what the profile mentions: these, and sysinfo for the listener.
        unprivileged.Union(privileged).Append("sysinfo").Order(StringComparer.Ordinal).ShouldBe(Syscalls.Names);
    }

    [Fact]
    public void Sysinfo_goes_to_the_listener_only_when_asked_and_nothing_else_changes()
    {
        foreach (bool privileged in new[] { false, true })
        {
            byte[] plain = privileged ? Privileged : Unprivileged;
            byte[] withListener = SeccompProfile.Default(privileged, [], sysinfoToMonitor: true).Compile();
            ShouldDifferOnlyIn(plain, withListener, "sysinfo", RetUserNotif, $"privileged {privileged}");
            Call(plain, "sysinfo").ShouldBe(RetAllow);
            // Only native calls reach the rule: an i386 sysinfo (116) is refused like every i386 call.
            Run(withListener, 116, 0x40000003).ShouldBe(Eperm);
        }

        // With overrides too, and it is no restriction an override could lift.
        Call(SeccompProfile.Default(privileged: false, ["keyctl"], sysinfoToMonitor: true).Compile(), "sysinfo").ShouldBe(RetUserNotif);
        Should.Throw<ArgumentException>(() => SeccompProfile.Default(privileged: false, ["sysinfo"], sysinfoToMonitor: true));
        SeccompProfile.Overridable(privileged: false).ShouldNotContain("sysinfo");
        SeccompProfile.Default(privileged: true, [], sysinfoToMonitor: true).ToString().ShouldEndWith("; sysinfo: to the listener; otherwise allow");
    }

    [Fact]
    public void A_rule_for_the_listener_takes_no_errno()
    {
        SeccompRule.Notify("sysinfo").ShouldBe(SeccompProfile.SysinfoToMonitor);
        Should.Throw<ArgumentOutOfRangeException>(() => new SeccompProfile([SeccompRule.Notify("sysinfo") with { Errno = 1 }]))
            .Message.ShouldContain("\"sysinfo\" goes to the listener");
        Should.Throw<ArgumentException>(() => new SeccompProfile([SeccompRule.Notify("getpid")])).Message.ShouldContain("\"getpid\"");
    }

    [Fact]
    public void Program_layout_is_struct_sock_filter()
    {
        foreach (byte[] program in new[] { Unprivileged, Privileged })
        {
            Instruction[] code = Decode(program);
            code.Length.ShouldBeLessThan(256);
            code[0].ShouldBe(new Instruction(LdAbsW, 0, 0, 4)); // ld [4]: arch
            code[1].ShouldBe(new Instruction(JeqK, 1, 0, AuditArchX86_64));
            code[2].ShouldBe(new Instruction(RetK, 0, 0, Eperm));
            code[3].ShouldBe(new Instruction(LdAbsW, 0, 0, 0)); // ld [0]: nr
            code[^1].ShouldBe(new Instruction(RetK, 0, 0, RetAllow));
            program[..8].ShouldBe(new byte[] { 0x20, 0, 0, 0, 4, 0, 0, 0 });
            program[8..16].ShouldBe(new byte[] { 0x15, 0, 1, 0, 0x3e, 0, 0, 0xc0 }); // code, jt, jf, k
        }
    }

    [Fact]
    public void Profiles_refuse_rules_that_cannot_compile()
    {
        Should.Throw<ArgumentException>(() => new SeccompProfile([new SeccompRule("getpid", 1)])).Message.ShouldContain("\"getpid\"");
        Should.Throw<ArgumentOutOfRangeException>(() => new SeccompProfile([new SeccompRule("bpf", 0)]));
        Should.Throw<ArgumentOutOfRangeException>(() => new SeccompProfile([new SeccompRule("bpf", 4096)]));
        Should.Throw<ArgumentOutOfRangeException>(() => new SeccompProfile([new SeccompRule("clone", 1, new ArgumentHasAnyBits(6, 1))]));
        Should.Throw<ArgumentOutOfRangeException>(() => new SeccompProfile([new SeccompRule("clone", 1, new ArgumentHasAnyBits(0, 0))]));
    }

    [Fact]
    public void Describes_itself_in_one_line()
    {
        string text = SeccompProfile.Default(privileged: true, ["keyctl"]).ToString();

        text.ShouldStartWith("arch != x86_64: EPERM; x32: EPERM; kexec_load: EPERM; ");
        text.ShouldContain("; open_tree if arg2 & 0x1: ENOSYS; unshare if arg0 & 0x10000000: EPERM; ");
        text.ShouldNotContain("keyctl");
        text.ShouldEndWith("; clone3: ENOSYS; otherwise allow");
    }
}
