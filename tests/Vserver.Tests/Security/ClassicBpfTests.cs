using System.Buffers.Binary;
using Shouldly;
using Xunit;
using static Vserver.Tests.Security.ClassicBpf;

namespace Vserver.Tests.Security;

/// <summary>The test interpreter itself: it must run what it accepts right and refuse what the kernel would refuse.</summary>
public sealed class ClassicBpfTests
{
    private static byte[] Assemble(params (ushort Code, byte Jt, byte Jf, uint K)[] program)
    {
        byte[] bytes = new byte[program.Length * 8];
        for (int i = 0; i < program.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 8), program[i].Code);
            bytes[(i * 8) + 2] = program[i].Jt;
            bytes[(i * 8) + 3] = program[i].Jf;
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((i * 8) + 4), program[i].K);
        }

        return bytes;
    }

    [Fact]
    public void Runs_loads_jumps_and_returns()
    {
        // nr > 10 → 1; else args[1] low word has bit 2 → 2; else arch >= 5 → 3; else 4.
        byte[] program = Assemble(
            (LdAbsW, 0, 0, 0),
            (JgtK, 0, 1, 10),
            (RetK, 0, 0, 1),
            (LdAbsW, 0, 0, 24),
            (JsetK, 0, 1, 4),
            (RetK, 0, 0, 2),
            (LdAbsW, 0, 0, 4),
            (JgeK, 0, 1, 5),
            (RetK, 0, 0, 3),
            (RetK, 0, 0, 4));

        Run(program, 11, 0).ShouldBe(1u);
        Run(program, 10, 0, 0, 4).ShouldBe(2u);
        Run(program, 10, 0, 0, 0x4_0000_0000).ShouldBe(4u); // only the low word of an argument is loaded
        Run(program, 10, 5).ShouldBe(3u);
        Run(program, -1, 4).ShouldBe(1u); // nr is compared unsigned
    }

    [Fact]
    public void Refuses_programs_the_kernel_would_refuse()
    {
        Should.Throw<ArgumentException>(() => Decode([])).Message.ShouldContain("not 1-4096 instructions");
        Should.Throw<ArgumentException>(() => Decode(new byte[12])).Message.ShouldContain("not 1-4096 instructions");
        Should.Throw<ArgumentException>(() => Decode(new byte[4097 * 8])).Message.ShouldContain("not 1-4096 instructions");
        Should.Throw<ArgumentException>(() => Decode(Assemble((JeqK, 1, 0, 0), (RetK, 0, 0, 0))))
            .Message.ShouldContain("leaves the program");
        Should.Throw<ArgumentException>(() => Decode(Assemble((JsetK, 0, 255, 0), (RetK, 0, 0, 0))))
            .Message.ShouldContain("leaves the program");
        Should.Throw<ArgumentException>(() => Decode(Assemble((RetK, 0, 0, 0), (LdAbsW, 0, 0, 0))))
            .Message.ShouldContain("fall off the end");
        Should.Throw<ArgumentException>(() => Decode(Assemble((LdAbsW, 0, 0, 64), (RetK, 0, 0, 0))))
            .Message.ShouldContain("not a word of seccomp_data");
        Should.Throw<ArgumentException>(() => Decode(Assemble((LdAbsW, 0, 0, 2), (RetK, 0, 0, 0))))
            .Message.ShouldContain("not a word of seccomp_data");
        Should.Throw<ArgumentException>(() => Decode(Assemble((0x16, 0, 0, 0)))).Message.ShouldContain("unknown opcode 0x16");
    }
}
