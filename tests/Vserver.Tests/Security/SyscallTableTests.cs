using System.Text.RegularExpressions;
using Shouldly;
using Vserver.Isolation.Security;
using Xunit;

namespace Vserver.Tests.Security;

/// <summary>The hard-coded x86-64 numbers against the kernel's own list on this machine.</summary>
public sealed partial class SyscallTableTests
{
    private const string Header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h";

    [GeneratedRegex(@"^#define __NR_(\w+) (\d+)$", RegexOptions.Multiline)]
    private static partial Regex NrDefine();

    [Fact]
    public void Numbers_match_asm_unistd_64_h()
    {
        if (!File.Exists(Header))
        {
            Assert.Fail($"{Header} is missing: install linux-libc-dev (libc6-dev depends on it, and `make` installs that)");
        }

        Dictionary<string, int> header = NrDefine().Matches(File.ReadAllText(Header))
            .ToDictionary(m => m.Groups[1].Value, m => int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        header.Count.ShouldBeGreaterThan(300, $"{Header} does not look like the x86-64 syscall list");

        foreach (string name in Syscalls.Names)
        {
            Syscalls.TryGetNumber(name, out int nr).ShouldBeTrue(name);
            header.ShouldContainKey(name);
            nr.ShouldBe(header[name], name);
        }

        foreach ((string name, int nr) in SeccompProfileTests.Unrestricted)
        {
            nr.ShouldBe(header[name], name);
        }
    }
}
